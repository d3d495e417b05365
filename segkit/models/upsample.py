"""Upsampling modes for the UNet decoder: one small class per mode, all dimension-agnostic.

Channel policy (the same for every mode, so comparisons are fair): each upsampler
maps ``in_channels → out_channels`` while multiplying the spatial size by ``scale``.
Interpolating modes do so with a 3×3(×3) convolution after the interpolation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
from monai.networks.utils import icnr_init, pixelshuffle
from torch import nn
from torch.nn import functional as F

from segkit.models.layers import conv
from segkit.registry import UPSAMPLERS

Scale = int | Sequence[int]


def _as_tuple(scale: Scale, spatial_dims: int) -> tuple[int, ...]:
    return tuple(scale) if isinstance(scale, Sequence) else (scale,) * spatial_dims


@UPSAMPLERS.register("transposed")
class TransposedUpsample(nn.Module):
    """Transposed convolution with kernel = stride = scale."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, scale: Scale) -> None:
        super().__init__()
        factor = _as_tuple(scale, spatial_dims)
        self.up = Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=factor, stride=factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class _InterpolateThenConv(nn.Module):
    """Interpolation by ``scale`` followed by a stride-1 3×3(×3) convolution."""

    interpolation = "nearest"

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, scale: Scale) -> None:
        super().__init__()
        self.scale = _as_tuple(scale, spatial_dims)
        self.conv = conv(spatial_dims, in_channels, out_channels, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        linear = self.interpolation == "linear"
        mode = {3: "bilinear", 4: "bilinear", 5: "trilinear"}[x.ndim] if linear else "nearest"
        size = [s * f for s, f in zip(x.shape[2:], self.scale, strict=True)]
        x = F.interpolate(x, size=size, mode=mode, align_corners=False if linear else None)
        return self.conv(x)


@UPSAMPLERS.register("nearest")
class NearestUpsample(_InterpolateThenConv):
    """Nearest-neighbour interpolation + convolution."""

    interpolation = "nearest"


@UPSAMPLERS.register("linear")
class LinearUpsample(_InterpolateThenConv):
    """Bilinear (2D) / trilinear (3D) interpolation + convolution."""

    interpolation = "linear"


@UPSAMPLERS.register("pixelshuffle")
class PixelShuffleUpsample(nn.Module):
    """Convolution to ``out·s^d`` channels, then a periodic shuffle (sub-pixel convolution).

    ICNR initialisation makes the initial output equal to a nearest upsampling of
    a convolution, so training starts free of checkerboard artefacts.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, scale: Scale) -> None:
        super().__init__()
        factors = set(_as_tuple(scale, spatial_dims))
        if len(factors) != 1:
            raise ValueError("pixelshuffle upsampling needs the same scale on every axis")
        self.spatial_dims = spatial_dims
        self.factor = factors.pop()
        self.conv = conv(spatial_dims, in_channels, out_channels * self.factor**spatial_dims, 3, bias=True)
        icnr_init(self.conv, self.factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixelshuffle(self.conv(x), self.spatial_dims, self.factor)
