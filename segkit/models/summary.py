"""Parameter counts and GFLOPs of whole UNets at a reference input, computed on the meta device.

Nothing is allocated or run for real: the model is built on ``torch.device("meta")``
and torch's ``FlopCounterMode`` counts the forward pass (FLOPs = 2 × multiply-adds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from segkit.config import ModelCfg
from segkit.models.unet import build_model

REFERENCE_INPUT = {2: (512, 512), 3: (128, 128, 128)}


@dataclass(frozen=True)
class ModelSummary:
    """One row of ``segkit models``."""

    encoder: str
    spatial_dims: int
    parameters: int
    encoder_parameters: int
    gflops: float
    input_shape: tuple[int, ...]

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


def summarize(cfg: ModelCfg, spatial_size: tuple[int, ...] | None = None) -> ModelSummary:
    """Parameters and forward GFLOPs of the UNet ``cfg`` at ``spatial_size`` (default: the reference input)."""
    cfg = cfg.model_copy(update={"encoder_weights": None})
    with torch.device("meta"):
        model = build_model(cfg).eval()
        shape = (1, cfg.in_channels, *(spatial_size or REFERENCE_INPUT[cfg.spatial_dims]))
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.empty(shape))
    return ModelSummary(
        encoder=cfg.encoder, spatial_dims=cfg.spatial_dims,
        parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),  # not unused supervision heads
        encoder_parameters=sum(p.numel() for p in model.encoder.parameters()),
        gflops=counter.get_total_flops() / 1e9, input_shape=shape,
    )
