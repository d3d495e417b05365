"""Device and numeric-precision choices shared by training and prediction."""

from __future__ import annotations

import contextlib
import importlib.util
import re

import torch

from segkit.errors import SegkitError


def resolve_device(name: str, key: str = "--device") -> torch.device:
    """``auto`` → the first GPU when present, else CPU; ``cpu`` / ``cuda`` / ``cuda:N`` as given. ``key`` is how
    the user chose it (``--device``, a config key such as ``train.device``, or a Python argument such as
    ``device=``), named in errors."""
    fix = (f"{key} cpu" if key.startswith("--") else f"{key}'cpu'" if key.endswith("=") else f"--set {key}=cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise SegkitError(f"{key} '{name}' is not one of auto, cpu, cuda, cuda:N")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SegkitError(f"{key} '{name}' requested but no CUDA GPU is available; use {fix}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SegkitError(f"{key} '{name}': only {torch.cuda.device_count()} GPU(s) visible")
    return device


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision``; None means fp32.

    ``auto``: bf16 on GPUs that support it, fp16 (with gradient scaling in training) on older GPUs,
    fp32 on CPU. ``bf16`` and ``fp16`` are honoured on CPU too: bf16 prediction there is ~2× faster than fp32
    on CPUs with AMX/AVX512-BF16 (``models.packed_conv``), fp16 is slow.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def arithmetic_name(device: torch.device, precision: str) -> str:
    """What ``precision`` computes in on ``device``: ``fp32``, ``bf16`` or ``fp16`` (``auto`` resolved)."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype(device, precision)]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX or AVX512-BF16), where bf16 prediction beats fp32."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def use_channels_last(device: torch.device, setting: str, norm: str) -> bool:
    """``train.memory_format``: ``auto`` is channels-last on GPUs except with instance norm, whose
    cuDNN kernels fall back to slow paths for channels-last inputs; contiguous on CPU."""
    if setting == "auto":
        return device.type == "cuda" and norm != "instance"
    return setting == "channels_last"


def channels_last_format(spatial_dims: int) -> torch.memory_format:
    """The channels-last memory format for 2D (NHWC) or 3D (NDHWC) tensors."""
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype`` (a no-op when ``dtype`` is None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_channels_last_inference(setting: str, norm: str, device: torch.device) -> bool:
    """``infer.memory_format``: ``auto`` is channels-last, except for instance-norm models where their norms
    would convert layouts: everywhere but on a GPU with Triton, where segkit's own instance norm keeps the
    layout (``models.fast_instance_norm``). Measured on this 2-core CPU (UNet-ResNet34 3D, batch norm, sliding
    window over a 137×137×199 volume, two 96×96×32 windows per pass): 18.5 → 15.3 s per volume; an
    instance-norm forward gained nothing there (0.88 → 0.93 s). On an H100: docs/BENCHMARKS.md."""
    if setting == "auto":
        return norm != "instance" or triton_kernels_usable(device)
    return setting == "channels_last"


def triton_available() -> bool:
    """Whether Triton is installed (PyTorch's CUDA builds bring it)."""
    return importlib.util.find_spec("triton") is not None


def triton_kernels_usable(device: torch.device) -> bool:
    """Whether segkit's Triton kernels can run on ``device``: a CUDA GPU Triton supports (compute capability
    7.0 or newer) and Triton installed."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (7, 0) and triton_available()


class ChannelsLastInput(torch.nn.Module):
    """Runs ``model`` (already converted to channels-last) on channels-last copies of its inputs."""

    def __init__(self, model: torch.nn.Module, spatial_dims: int) -> None:
        super().__init__()
        self.model = model.to(memory_format=channels_last_format(spatial_dims))
        self.memory_format = channels_last_format(spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model's output for ``x`` laid out channels-last."""
        return self.model(x.contiguous(memory_format=self.memory_format))


def class_indices(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """``logits.argmax(dim)``, computed as ``logits.max(dim).indices`` (the same indices, ties to the first).

    On the CPU, torch's ``argmax`` over the class axis of a contiguous (K, X, Y, Z) volume is 12× slower than
    ``max`` (1.80 vs 0.15 s for 3×256×256×120 float32 with torch 2.13 on the 2-core test machine).
    """
    return logits.max(dim).indices
