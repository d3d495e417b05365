"""Encoder weights from a local file (``model.encoder_weights``); nothing is ever downloaded.

The file's state dict (torchvision or timm layout, e.g. ImageNet weights) is adapted
to the encoder before a strict load:

* classifier keys (``fc.*``, ``classifier.*``) are dropped;
* torchvision's legacy DenseNet names (``norm.1`` → ``norm1``, ``conv.2`` → ``conv2`` …) are renamed;
* the first convolution is adapted to the encoder's input channels (timm's ``adapt_input_conv`` rule);
* 2D kernels are inflated for a 3D encoder along the LAST kernel axis, because segkit's
  volumes are (x, y, z) with depth z last: (O, I, kh, kw) → (O, I, kh, kw, kd) / kd;
* norm running statistics are dropped where the encoder's norm keeps none (instance/group norm).

Anything else that does not match (missing or unexpected keys, shapes) is a
:class:`~segkit.errors.CheckpointError`. ``.pth``/``.pt`` files are read with
``weights_only=True``, so a pickle carrying code is refused rather than run.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from segkit.errors import CheckpointError

SETTING = "model.encoder_weights"
SUFFIXES = (".pth", ".pt", ".safetensors")
CLASSIFIER_PREFIXES = ("fc.", "classifier.")
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")
NESTED_KEYS = ("state_dict", "model")
# DDP's module., Lightning's model., a segkit UNet's (or a detector's) encoder./backbone. around the encoder's keys
WRAPPER_PREFIXES = ("module.", "model.", "encoder.", "backbone.")
SHOWN_KEYS = 5
# the pattern torchvision's densenet._load_state_dict uses for its pre-0.4 key names
_LEGACY_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)

# the class or function torch's weights_only unpickler refused, e.g. "GLOBAL posix.system"
_BLOCKED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")

StateDict = dict[str, torch.Tensor]


def load_encoder_weights(encoder: nn.Module, path: Path) -> None:
    """Load encoder weights from a local ``.pth``/``.pt``/``.safetensors`` file into ``encoder``.

    Wrapper prefixes (``module.``, ``model.``, ``encoder.``, ``backbone.``) are stripped, classifier keys
    dropped, legacy DenseNet names renamed, the first convolution
    adapted to the encoder's input channels and 2D kernels inflated to 3D along the last
    (depth, z) kernel axis. Raises :class:`CheckpointError` (one line naming the file)
    when the file cannot be read or does not match the encoder.
    """
    path = Path(path)
    target = encoder.state_dict()
    state = _strip_wrapper_prefixes(_read_state_dict(path), target)
    state = _rename_legacy_densenet(_drop_classifier(state, target))
    state = _adapt_first_conv(state, target, _first_conv_key(encoder))
    state = _drop_absent_running_stats(_inflate_to_3d(state, target), target)
    _check_match(state, target, path)
    # files saved before torch 0.4.1 (e.g. torchvision's DenseNet weights) have no batch counters
    for key in target:
        if key.endswith(".num_batches_tracked"):
            state.setdefault(key, target[key])
    encoder.load_state_dict(state, strict=True)


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A first-conv weight (O, I, *kernel) adapted to ``in_channels`` inputs (timm's rule).

    One channel: the sum over the file's channels (a grey image gives the response of the
    same grey RGB image). Otherwise the channels are repeated cyclically to ``in_channels``
    and scaled by I / in_channels (3 / in_channels for RGB weights), preserving the response
    to an input equal on every channel.
    """
    file_channels = weight.shape[1]
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_channels / file_channels)
    tiled = weight.repeat(1, repeats, *([1] * (weight.ndim - 2)))[:, :in_channels]
    return tiled * (file_channels / in_channels)


def _error(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"encoder weights file {path} ({SETTING}) {problem}")


def _first_line(exc: BaseException) -> str:
    line = next((s.strip() for s in str(exc).splitlines() if s.strip()), "")
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _read_state_dict(path: Path) -> StateDict:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise _error(path, f"has unsupported suffix '{path.suffix}' (use {', '.join(SUFFIXES)})")
    try:
        if suffix == ".safetensors":
            loaded = load_file(path)
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # missing, truncated, not a checkpoint, or refused by weights_only: all the file's fault
        raise _error(path, _read_problem(exc)) from exc
    return _unwrap(loaded, path)


def _read_problem(exc: Exception) -> str:
    """What went wrong reading the file, in segkit's terms: torch's weights_only refusal advises
    ``weights_only=False``, which segkit never uses."""
    if isinstance(exc, FileNotFoundError):
        return "cannot be read: there is no such file (check the path)"
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and text.startswith("Weights only load failed"):
        blocked = _BLOCKED_GLOBAL.search(text)
        if blocked:
            return (f"cannot be read: it pickles the Python object {blocked[1]}, and segkit unpickles tensors only "
                    f"(weights_only=True); re-save just the weights where you trust the file, e.g. "
                    f"torch.save(model.state_dict(), path) or safetensors' save_file")
        detail = _UNPICKLER_DETAIL.search(text)
        return f"cannot be read: it is not a PyTorch weights file ({detail[1] if detail else 'unpickling failed'})"
    return f"cannot be read ({_first_line(exc)})"


def _unwrap(loaded: object, path: Path) -> StateDict:
    """The state dict itself, or the one nested under ``state_dict`` / ``model`` in a training checkpoint."""
    if isinstance(loaded, dict):
        nested = next((loaded[k] for k in NESTED_KEYS if isinstance(loaded.get(k), dict)), None)
        loaded = loaded if nested is None else nested
    if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        raise _error(path, "does not hold a state dict (a mapping of parameter names to tensors)")
    return dict(loaded)


def _strip_wrapper_prefixes(state: StateDict, target: StateDict) -> StateDict:
    """While no key is one of the encoder's, the keys under the wrapper prefix that names most of them, stripped
    (others, such as a UNet's ``decoder.``, dropped); ``module.model.`` takes two rounds."""
    for _ in WRAPPER_PREFIXES:
        if any(key in target for key in state):
            return state
        present = [p for p in WRAPPER_PREFIXES if any(key.startswith(p) for key in state)]
        if not present:
            return state
        prefix = max(present, key=lambda p: sum(key[len(p):] in target for key in state if key.startswith(p)))
        state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    return state


def _drop_classifier(state: StateDict, target: StateDict) -> StateDict:
    return {k: v for k, v in state.items() if k in target or not k.startswith(CLASSIFIER_PREFIXES)}


def _rename_legacy_densenet(state: StateDict) -> StateDict:
    renamed = {}
    for key, value in state.items():
        match = _LEGACY_DENSENET.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def _first_conv_key(encoder: nn.Module) -> str | None:
    return next((f"{name}.weight" for name, module in encoder.named_modules()
                 if isinstance(module, nn.modules.conv._ConvNd)), None)


def _adapt_first_conv(state: StateDict, target: StateDict, key: str | None) -> StateDict:
    if key is None or key not in state or key not in target:
        return state
    weight, wanted = state[key], target[key].shape[1]
    if weight.ndim < 3 or weight.shape[1] == wanted:
        return state
    return {**state, key: adapt_input_channels(weight, wanted)}


def _inflate_to_3d(state: StateDict, target: StateDict) -> StateDict:
    """2D kernels (O, I, kh, kw) → (O, I, kh, kw, kd) / kd: depth is the last axis of segkit's (x, y, z) volumes."""
    inflated = dict(state)
    for key, weight in state.items():
        wanted = target.get(key)
        if wanted is not None and wanted.ndim == 5 and weight.ndim == 4 and weight.shape == wanted.shape[:4]:
            depth = wanted.shape[-1]
            inflated[key] = (weight / depth).unsqueeze(-1).expand(*weight.shape, depth)  # copied by the load
    return inflated


def _drop_absent_running_stats(state: StateDict, target: StateDict) -> StateDict:
    """Running statistics of norms that exist in the encoder but keep none (instance/group norm)."""

    def absent(key: str) -> bool:
        module, _, name = key.rpartition(".")
        return name in RUNNING_STATS and key not in target and f"{module}.weight" in target

    return {k: v for k, v in state.items() if not absent(k)}


def _listed(keys: list[str], what: str) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS]) + (", …" if len(keys) > SHOWN_KEYS else "")
    return f"{len(keys)} {what} ({shown})"


def _check_match(state: StateDict, target: StateDict, path: Path) -> None:
    missing = [k for k in target if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    mismatched = [f"{k} file {tuple(state[k].shape)} vs encoder {tuple(target[k].shape)}"
                  for k in target if k in state and state[k].shape != target[k].shape]
    problems = [_listed(keys, what) for keys, what in
                ((missing, "missing keys"), (unexpected, "unexpected keys"), (mismatched, "shape mismatches"))
                if keys]
    if problems:
        raise _error(path, f"does not match the encoder: {'; '.join(problems)} (use weights of the same variant as "
                           f"model.encoder, e.g. resnet34 weights for encoder resnet34)")
