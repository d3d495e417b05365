"""Upsampling modes for the UNet decoder: one small class per mode, all dimension-agnostic.

Channel policy (the same for every mode, so comparisons are fair): each upsampler
maps ``in_channels → out_channels`` while multiplying the spatial size by ``scale``.
Interpolating modes do so with a 3×3(×3) convolution after the interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
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


def pixel_shuffle(x: torch.Tensor, factors: Sequence[int]) -> torch.Tensor:
    """Periodic shuffle ``(B, C·∏f, *S) → (B, C, *(S·f))`` for any dims and per-axis factors.

    Channel ``c·∏f + j`` fills sub-position ``j`` (row-major over the factors) of channel
    ``c``: MONAI's ``pixelshuffle`` order, which it only offers for one factor on every axis.
    """
    dims, batch, channels = len(factors), x.shape[0], x.shape[1] // math.prod(factors)
    spatial = x.shape[2:]
    x = x.reshape(batch, channels, *factors, *spatial)
    interleaved = [axis for k in range(dims) for axis in (2 + dims + k, 2 + k)]
    x = x.permute(0, 1, *interleaved)
    return x.reshape(batch, channels, *(s * f for s, f in zip(spatial, factors, strict=True)))


def icnr_(conv_layer: nn.Module, factors: Sequence[int]) -> None:
    """ICNR: every sub-position of an output channel starts with the same kernel and bias."""
    subpositions = math.prod(factors)
    out_channels = conv_layer.weight.shape[0] // subpositions
    base = torch.empty(out_channels, *conv_layer.weight.shape[1:])
    nn.init.kaiming_normal_(base)
    with torch.no_grad():
        conv_layer.weight.copy_(base.repeat_interleave(subpositions, dim=0))
        if conv_layer.bias is not None:
            conv_layer.bias.zero_()


@UPSAMPLERS.register("pixelshuffle")
class PixelShuffleUpsample(nn.Module):
    """Convolution to ``out·∏scale`` channels, then a periodic shuffle (sub-pixel convolution).

    ICNR initialisation makes the initial output equal to a nearest upsampling of
    a convolution, so training starts free of checkerboard artefacts.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, scale: Scale) -> None:
        super().__init__()
        self.factors = _as_tuple(scale, spatial_dims)
        self.conv = conv(spatial_dims, in_channels, out_channels * math.prod(self.factors), 3, bias=True)
        icnr_(self.conv, self.factors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle(self.conv(x), self.factors)
