"""Run a 2D model over volumes: one-slice windows across ``data.slice_axis``, squeezed and restacked."""

from __future__ import annotations

import torch
from torch import nn

from segkit.config import Config


class SliceWise(nn.Module):
    """Wrap a 2D model so it takes ``(B, C, X, Y, Z)`` windows one voxel thick along ``axis``."""

    def __init__(self, model: nn.Module, axis: int) -> None:
        super().__init__()
        self.model = model
        self.dim = axis + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.squeeze(self.dim)).unsqueeze(self.dim)


def as_volume_model(model: nn.Module, cfg: Config) -> nn.Module:
    """The slice-wise wrapper for a 2D model on volumes; ``model`` itself otherwise."""
    return SliceWise(model, cfg.data.slice_axis) if cfg.slices_volumes else model
