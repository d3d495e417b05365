"""Dimension-agnostic layer helpers over MONAI's layer factories."""

from __future__ import annotations

import math
from collections.abc import Sequence

from monai.networks.layers.factories import Conv, Norm
from torch import nn

NORMS = ("batch", "instance", "group")
ACTS = ("relu", "leakyrelu", "gelu", "silu")
GROUPS = 32  # GroupNorm groups (fewer when the channel count is not divisible)


def conv(spatial_dims: int, in_ch: int, out_ch: int, kernel: int, stride: int | Sequence[int] = 1,
         groups: int = 1, bias: bool = False) -> nn.Module:
    """A ``kernel``-sized convolution with 'same' padding (for odd kernels)."""
    conv_type = Conv[Conv.CONV, spatial_dims]
    return conv_type(in_ch, out_ch, kernel_size=kernel, stride=stride, padding=kernel // 2,
                     groups=groups, bias=bias)


def norm(name: str, spatial_dims: int, channels: int) -> nn.Module:
    """A normalisation layer with learnable affine parameters: ``batch``, ``instance`` or ``group``."""
    if name == "batch":
        return Norm[Norm.BATCH, spatial_dims](channels)
    if name == "instance":
        return Norm[Norm.INSTANCE, spatial_dims](channels, affine=True)
    if name == "group":
        return nn.GroupNorm(math.gcd(GROUPS, channels), channels)
    raise ValueError(f"unknown norm '{name}' (valid: {', '.join(NORMS)})")


def act(name: str) -> nn.Module:
    """A parameter-free activation: ``relu``, ``leakyrelu`` (slope 0.01), ``gelu`` or ``silu``."""
    if name not in ACTS:
        raise ValueError(f"unknown activation '{name}' (valid: {', '.join(ACTS)})")
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leakyrelu":
        return nn.LeakyReLU(0.01, inplace=True)
    return nn.GELU() if name == "gelu" else nn.SiLU(inplace=True)


class ConvNormAct(nn.Sequential):
    """conv → norm → activation."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, norm_name: str, act_name: str = "relu",
                 kernel: int = 3) -> None:
        super().__init__(
            conv(spatial_dims, in_ch, out_ch, kernel),
            norm(norm_name, spatial_dims, out_ch),
            act(act_name),
        )
