"""Checkpoint directories: ``weights.safetensors`` + ``config.json`` + ``state.json``.

Each save writes a new directory ``checkpoints/<name>-<step>/`` file by file
(atomic writes) and then atomically repoints the symlink ``<run_dir>/<name>``
to it, so ``best`` and ``last`` always name a complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from segkit.config import Config, config_from_dict, config_to_dict
from segkit.errors import CheckpointError, SegkitError
from segkit.io.atomic import atomic_write_bytes, atomic_write_text

WEIGHTS, CONFIG, STATE = "weights.safetensors", "config.json", "state.json"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the resolved config, the weights and the training state."""

    path: Path
    config: Config
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]


def save_checkpoint(run_dir: Path, name: str, model: torch.nn.Module, cfg: Config, state: dict[str, Any]) -> Path:
    """Write a checkpoint and point ``run_dir/name`` at it; returns the link path."""
    store = run_dir / "checkpoints"
    target = store / f"{name}-{int(state.get('global_step', 0)):09d}"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(target / WEIGHTS, save(weights))
    atomic_write_text(target / CONFIG, json.dumps(config_to_dict(cfg), indent=2) + "\n")
    atomic_write_text(target / STATE, json.dumps(state, indent=2) + "\n")
    link = run_dir / name
    previous = link.resolve() if link.is_symlink() else None
    tmp_link = run_dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    os.symlink(os.path.relpath(target, run_dir), tmp_link)
    os.replace(tmp_link, link)
    if previous is not None and previous != target.resolve():
        _remove_if_unreferenced(run_dir, previous)
    return link


def _remove_if_unreferenced(run_dir: Path, directory: Path) -> None:
    links = [p for p in run_dir.iterdir() if p.is_symlink()]
    if all(p.resolve() != directory for p in links):
        shutil.rmtree(directory, ignore_errors=True)


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory from a checkpoint path or a run directory (``best``, then ``last``)."""
    path = Path(path)
    for candidate in (path, path / "best", path / "last"):
        if (candidate / WEIGHTS).is_file() and (candidate / CONFIG).is_file():
            return candidate
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    raise CheckpointError(f"{path}: not a checkpoint (needs {WEIGHTS} and {CONFIG}) "
                          "nor a run directory with best/ or last/")


def load_checkpoint(path: Path) -> Checkpoint:
    """Load weights (safetensors, no pickle), the config and the state of a checkpoint."""
    directory = resolve_checkpoint(path)
    try:
        raw_config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
        state = json.loads((directory / STATE).read_text(encoding="utf-8")) if (directory / STATE).is_file() else {}
        weights = load_file(str(directory / WEIGHTS))
    except (OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"{directory}: unreadable checkpoint ({exc}); use another checkpoint") from None
    try:
        config = config_from_dict(raw_config, str(directory / CONFIG))
    except SegkitError as exc:
        raise CheckpointError(f"{directory}: {exc}") from None
    return Checkpoint(directory, config, weights, state)


def load_weights(model: torch.nn.Module, checkpoint: Checkpoint) -> None:
    """Load the checkpoint's weights strictly; mismatches become a one-line error."""
    try:
        model.load_state_dict(checkpoint.weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(f"{checkpoint.path}: weights do not fit the model in its config.json ({first})") from None
