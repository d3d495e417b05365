"""Dimension-agnostic layer helpers over MONAI's layer factories."""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.layers.factories import Conv, Norm
from torch import nn

NORMS = {"batch": Norm.BATCH, "instance": Norm.INSTANCE}


def conv(spatial_dims: int, in_ch: int, out_ch: int, kernel: int, stride: int | Sequence[int] = 1,
         groups: int = 1, bias: bool = False) -> nn.Module:
    """A ``kernel``-sized convolution with 'same' padding (for odd kernels)."""
    conv_type = Conv[Conv.CONV, spatial_dims]
    return conv_type(in_ch, out_ch, kernel_size=kernel, stride=stride, padding=kernel // 2,
                     groups=groups, bias=bias)


def norm(name: str, spatial_dims: int, channels: int) -> nn.Module:
    """A normalisation layer with learnable affine parameters (``batch`` or ``instance``)."""
    norm_type = Norm[NORMS[name], spatial_dims]
    return norm_type(channels, affine=True) if name == "instance" else norm_type(channels)


class ConvNormAct(nn.Sequential):
    """conv → norm → ReLU."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, norm_name: str, kernel: int = 3) -> None:
        super().__init__(
            conv(spatial_dims, in_ch, out_ch, kernel),
            norm(norm_name, spatial_dims, out_ch),
            nn.ReLU(inplace=True),
        )
