"""Skip fusion: how a decoder stage combines the upsampled tensor with the encoder skip."""

from __future__ import annotations

import torch
from torch import nn

from segkit.models.layers import conv
from segkit.registry import FUSIONS


@FUSIONS.register("concat")
class ConcatFusion(nn.Module):
    """U-Net style: concatenate along channels."""

    def __init__(self, spatial_dims: int, up_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.out_channels = up_channels + skip_channels

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([up, skip], dim=1)


@FUSIONS.register("add")
class AddFusion(nn.Module):
    """Project the skip with a 1×1 convolution to the upsampled channels and add."""

    def __init__(self, spatial_dims: int, up_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.out_channels = up_channels
        self.project = conv(spatial_dims, skip_channels, up_channels, 1, bias=True)

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return up + self.project(skip)
