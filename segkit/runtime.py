"""Device and numeric-precision choices shared by training and prediction."""

from __future__ import annotations

import contextlib
import re

import torch

from segkit.errors import SegkitError


def resolve_device(name: str) -> torch.device:
    """``auto`` → the first GPU when present, else CPU; ``cpu`` / ``cuda`` / ``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise SegkitError(f"device '{name}' is not one of auto, cpu, cuda, cuda:N")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SegkitError(f"device '{name}' requested but no CUDA GPU is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SegkitError(f"device '{name}': only {torch.cuda.device_count()} GPU(s) visible")
    return device


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (``auto``: bf16 on GPUs that support it, else fp32)."""
    if precision == "fp32":
        return None
    if device.type != "cuda":
        if precision == "bf16":
            return torch.bfloat16
        return None
    if precision == "auto" and not torch.cuda.is_bf16_supported():
        return None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype`` (a no-op when ``dtype`` is None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
