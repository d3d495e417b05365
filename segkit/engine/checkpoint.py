"""Checkpoint directories: ``weights.safetensors`` + ``config.json`` + ``state.json`` (+ resume files).

A save stages a complete directory under a temp name (every file fsynced), renames it to
``checkpoints/<name>-<step>-<id>/`` and then atomically repoints the symlink ``<run_dir>/<name>`` to it,
so ``best`` and ``last`` always name a complete checkpoint and a crash at any moment leaves the
previous one intact. ``last`` also carries what an exact resume needs: the raw weights when they
differ from the saved (EMA) ones, and ``resume.pt`` with the optimiser, schedule, gradient-scaler
and RNG states — plain tensors and containers, loaded only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import os
import pickle  # only for its error type: nothing here unpickles
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
from segkit.io.atomic import _fsync_dir, atomic_write_bytes, atomic_write_text, remove_stale_temps

WEIGHTS, CONFIG, STATE = "weights.safetensors", "config.json", "state.json"
TRAIN_WEIGHTS, RESUME = "train_weights.safetensors", "resume.pt"
PARTIAL = ".partial"
CHECKPOINT_STORE = "checkpoints"  # the folder inside a run directory that holds the checkpoint directories


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the resolved config, the weights and the training state."""

    path: Path
    config: Config
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]

    @property
    def class_names(self) -> list[str] | None:
        """The class names (background first) training saved from the dataset's ``dataset.json``, if they fit."""
        names = self.state.get("class_names")
        fits = isinstance(names, list) and len(names) == self.config.model.num_classes
        return names if fits and all(isinstance(n, str) for n in names) else None


@dataclass(frozen=True)
class Snapshot:
    """What one save writes: the weights ``predict`` uses, the JSON state and, for resuming, the raw
    training weights (when an EMA is saved as ``weights``) and the optimiser/schedule/RNG states."""

    weights: dict[str, torch.Tensor]
    state: dict[str, Any]
    train_weights: dict[str, torch.Tensor] | None = None
    resume: dict[str, Any] | None = None

    @classmethod
    def of(cls, model: torch.nn.Module, state: dict[str, Any]) -> Snapshot:
        """A weights-only snapshot of ``model``."""
        return cls(cpu_state_dict(model), state)


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors, detached, contiguous and on the CPU (safetensors requires all three)."""
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def _write_files(directory: Path, cfg: Config, snapshot: Snapshot) -> None:
    atomic_write_bytes(directory / WEIGHTS, save(snapshot.weights))
    if snapshot.train_weights is not None:
        atomic_write_bytes(directory / TRAIN_WEIGHTS, save(snapshot.train_weights))
    if snapshot.resume is not None:
        buffer = io.BytesIO()
        torch.save(snapshot.resume, buffer)
        atomic_write_bytes(directory / RESUME, buffer.getvalue())
    atomic_write_text(directory / CONFIG, json.dumps(config_to_dict(cfg), indent=2) + "\n")
    atomic_write_text(directory / STATE, json.dumps(snapshot.state, indent=2) + "\n")


def save_checkpoint(run_dir: Path, name: str, cfg: Config, snapshot: Snapshot) -> Path:
    """Write a checkpoint and point ``run_dir/name`` at it; returns the link path."""
    store = run_dir / CHECKPOINT_STORE
    store.mkdir(parents=True, exist_ok=True)
    # a fresh name each time: a resumed run may save the same step again while a link still names the old one
    target = store / f"{name}-{int(snapshot.state.get('global_step', 0)):09d}-{uuid.uuid4().hex[:6]}"
    staging = store / f".{target.name}{PARTIAL}"
    staging.mkdir()
    try:
        _write_files(staging, cfg, snapshot)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(store)
    link = run_dir / name
    previous = link.resolve() if link.is_symlink() else None
    tmp_link = run_dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    os.symlink(os.path.relpath(target, run_dir), tmp_link)
    os.replace(tmp_link, link)
    _fsync_dir(run_dir)
    if previous is not None and previous != target.resolve():
        _remove_if_unreferenced(run_dir, previous)
    return link


def remove_stale(run_dir: Path) -> None:
    """Delete what an interrupted save can leave: staged directories, temp links, unreferenced checkpoints,
    and temp files of killed atomic writes in ``run_dir`` (curves, logs)."""
    store = run_dir / CHECKPOINT_STORE
    for tmp_link in run_dir.glob(".*.tmp"):
        if tmp_link.is_symlink():
            tmp_link.unlink()
    remove_stale_temps(run_dir)
    if not store.is_dir() or store.is_symlink():
        return
    for directory in store.iterdir():
        if directory.is_symlink():
            continue  # segkit makes no links here: a planted one must not lead it to delete what it points at
        if directory.name.endswith(PARTIAL):
            shutil.rmtree(directory, ignore_errors=True)
        elif directory.is_dir():
            _remove_if_unreferenced(run_dir, directory.resolve())


def _remove_if_unreferenced(run_dir: Path, directory: Path) -> None:
    """Delete the checkpoint ``directory`` (a resolved path) when no link in ``run_dir`` names it. Only a real
    directory directly inside ``run_dir/checkpoints`` is ever deleted: a ``best``/``last`` link (or a
    ``checkpoints`` link) in a run directory from elsewhere may point at any folder."""
    if directory.parent != run_dir.resolve() / CHECKPOINT_STORE:
        return
    links = [p for p in run_dir.iterdir() if p.is_symlink()]
    if all(p.resolve() != directory for p in links):
        shutil.rmtree(directory, ignore_errors=True)


def load_resume_state(directory: Path) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
    """The raw training weights (None when ``weights.safetensors`` holds them) and ``resume.pt``."""
    try:
        resume = torch.load(directory / RESUME, map_location="cpu", weights_only=True)
        train_weights = load_file(str(directory / TRAIN_WEIGHTS)) if (directory / TRAIN_WEIGHTS).is_file() else None
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: no {RESUME}; only a run's last/ checkpoint can be resumed") from None
    except pickle.UnpicklingError:  # torch's weights_only unpickler met something other than tensors/containers
        raise CheckpointError(f"{directory / RESUME}: resume state refused: it holds objects other than tensors "
                              "and plain containers, which segkit never unpickles — resume only runs segkit wrote, "
                              "or start the run again without --resume") from None
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{directory}: resume state unreadable ({first}) — the checkpoint is damaged; start "
                              "the run again without --resume") from None
    return train_weights, resume


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory from a checkpoint path or a run directory (``best``, then ``last``)."""
    path = Path(path)
    for candidate in (path, path / "best", path / "last"):
        if (candidate / WEIGHTS).is_file() and (candidate / CONFIG).is_file():
            return candidate
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    if path.is_file():
        raise CheckpointError(f"{path}: a file, not a checkpoint; pass the folder holding {WEIGHTS} and {CONFIG} "
                              "(or a run directory) — pickled .pt/.pth files are never loaded")
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
    except RecursionError:  # a JSON file nested too deeply for the parser
        raise CheckpointError(f"{directory}: unreadable checkpoint (a JSON file nested too deeply to read); use "
                              "another checkpoint") from None
    try:
        config = config_from_dict(raw_config, str(directory / CONFIG))
    except SegkitError as exc:  # the message names directory/config.json already
        raise CheckpointError(f"{exc} — this segkit cannot rebuild the checkpoint's model; use a checkpoint "
                              "written by this version") from None
    return Checkpoint(directory, config, weights, state)


def load_weights(model: torch.nn.Module, checkpoint: Checkpoint) -> None:
    """Load the checkpoint's weights strictly; a mismatch becomes one short line."""
    expected, weights = model.state_dict(), checkpoint.weights
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    reshaped = [k for k in expected if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or reshaped:
        example = (f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'" if unexpected else
                   f"'{reshaped[0]}' is {tuple(weights[reshaped[0]].shape)}, the model needs "
                   f"{tuple(expected[reshaped[0]].shape)}")
        raise CheckpointError(f"{checkpoint.path}: weights do not fit the model in its {CONFIG} ({len(missing)} "
                              f"missing, {len(unexpected)} unexpected, {len(reshaped)} of another shape; e.g. "
                              f"{example}) — they come from another architecture; use the {CONFIG} saved with them")
    model.load_state_dict(weights, strict=True)
