"""Refuse bf16 training on CPUs whose oneDNN bf16 convolutions would compute wrong values for the run's shapes.

torch 2.13's oneDNN returns garbage or NaN, intermittently, for strided convolutions whose output is one voxel wide
along the last axis (docs/PREDICTION.md). Prediction guards its packed kernels (``models.packed_conv``); training runs
eager convolutions under autocast, with gradients, where segkit cannot swap kernels, so such a run is refused.
"""

from __future__ import annotations

import torch

from segkit.config import Config
from segkit.errors import ConfigError
from segkit.models.packed_conv import faulty_bf16_convolutions
from segkit.runtime import cpu_has_native_bf16


def refuse_faulty_cpu_bf16(cfg: Config, model: torch.nn.Module, device: torch.device,
                           amp_dtype: torch.dtype | None) -> None:
    """Raise a :class:`ConfigError` when bf16 autocast on this CPU would hit the faulty convolutions at the
    training patch or the validation window; a no-op elsewhere (one float32 pass over zeros per size otherwise)."""
    if device.type != "cpu" or amp_dtype != torch.bfloat16 or not cpu_has_native_bf16():
        return
    was_training = model.training
    model.eval()  # no batch-norm statistics are updated by the probe
    try:
        for key, size in (("train.patch_size", cfg.train.patch_size), ("infer.roi_size", cfg.roi_size)):
            faulty = faulty_bf16_convolutions(model, (1, cfg.model.in_channels, *size))
            if faulty:
                raise ConfigError(
                    f"train.precision=bf16 on this CPU: oneDNN's bf16 convolutions compute wrong values for "
                    f"{len(faulty)} convolution(s) at {key} {list(size)}, e.g. {faulty[0]} (an output one voxel wide "
                    f"on the last axis); set train.precision=fp32, or a {key} whose last axis keeps at least two "
                    "voxels at the deepest stage")
    finally:
        model.train(was_training)
