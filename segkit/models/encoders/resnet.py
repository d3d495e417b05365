"""ResNet, ResNeXt and Wide-ResNet encoders in 2D or 3D (torchvision parameter layout).

One class covers the family; each variant is one row of ``VARIANTS``. Parameter
names (``conv1``, ``bn1``, ``layer1.0.conv1`` …, ``downsample.0/1``) follow
torchvision so ImageNet state dicts load into the 2D encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.layers.factories import Pool
from torch import nn

from segkit.models.encoders.base import Encoder, EncoderArgs, FeatureInfo, cumulative
from segkit.models.layers import act, conv, norm
from segkit.registry import ENCODERS

STAGE_PLANES = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with an identity (or projected) shortcut."""

    expansion = 1

    def __init__(self, args: EncoderArgs, in_ch: int, planes: int, stride: tuple[int, ...],
                 groups: int = 1, base_width: int = 64) -> None:
        super().__init__()
        d, norm_name = args.spatial_dims, args.norm
        self.conv1 = conv(d, in_ch, planes, 3, stride)
        self.bn1 = norm(norm_name, d, planes)
        self.relu = act(args.act)
        self.conv2 = conv(d, planes, planes, 3)
        self.bn2 = norm(norm_name, d, planes)
        self.downsample = _shortcut(args, in_ch, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (grouped for ResNeXt) → 1×1 expand, with shortcut."""

    expansion = 4

    def __init__(self, args: EncoderArgs, in_ch: int, planes: int, stride: tuple[int, ...],
                 groups: int = 1, base_width: int = 64) -> None:
        super().__init__()
        d, norm_name = args.spatial_dims, args.norm
        width = int(planes * (base_width / 64.0)) * groups
        out_ch = planes * self.expansion
        self.conv1 = conv(d, in_ch, width, 1)
        self.bn1 = norm(norm_name, d, width)
        self.conv2 = conv(d, width, width, 3, stride, groups=groups)
        self.bn2 = norm(norm_name, d, width)
        self.conv3 = conv(d, width, out_ch, 1)
        self.bn3 = norm(norm_name, d, out_ch)
        self.relu = act(args.act)
        self.downsample = _shortcut(args, in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(args: EncoderArgs, in_ch: int, out_ch: int, stride: tuple[int, ...]) -> nn.Module | None:
    if all(s == 1 for s in stride) and in_ch == out_ch:
        return None
    d = args.spatial_dims
    return nn.Sequential(conv(d, in_ch, out_ch, 1, stride), norm(args.norm, d, out_ch))


@dataclass(frozen=True)
class ResNetSpec:
    """One ResNet variant: block type, blocks per stage, groups and width per group."""

    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64


class ResNetEncoder(Encoder):
    """ResNet-family encoder returning the stem and the four stages' outputs.

    Stage strides: the stem convolution, the max pool, then the first block of layers 2-4.
    """

    def __init__(self, spec: ResNetSpec, args: EncoderArgs) -> None:
        super().__init__()
        d = args.spatial_dims
        strides = args.stage_strides(5)
        self.conv1 = conv(d, args.in_channels, 64, 7, stride=strides[0])
        self.bn1 = norm(args.norm, d, 64)
        self.relu = act(args.act)
        self.maxpool = Pool[Pool.MAX, d](kernel_size=3, stride=strides[1], padding=1)
        in_ch, channels = 64, [64]
        for index, planes in enumerate(STAGE_PLANES):
            unit = (1,) * d
            stage_stride = unit if index == 0 else strides[index + 1]  # layer1 follows the max pool
            blocks = []
            for block_index in range(spec.layers[index]):
                blocks.append(spec.block(args, in_ch, planes, stage_stride if block_index == 0 else unit,
                                         spec.groups, spec.width_per_group))
                in_ch = planes * spec.block.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            channels.append(in_ch)
        self.feature_info = [FeatureInfo(c, r) for c, r in zip(channels, cumulative(strides), strict=True)]
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        features = [stem]
        x = self.maxpool(stem)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        return features


def _init_weights(module: nn.Module) -> None:
    """Kaiming init for convs; zero the last norm of each residual branch (starts as identity)."""
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    for m in module.modules():
        last_norm = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else getattr(m, "bn2", None)
        if isinstance(m, (BasicBlock, Bottleneck)) and getattr(last_norm, "weight", None) is not None:
            nn.init.zeros_(last_norm.weight)


VARIANTS = {
    "resnet18": ResNetSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ResNetSpec(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ResNetSpec(Bottleneck, (3, 4, 6, 3)),
    "resnet101": ResNetSpec(Bottleneck, (3, 4, 23, 3)),
    "resnet152": ResNetSpec(Bottleneck, (3, 8, 36, 3)),
    "resnext50_32x4d": ResNetSpec(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4),
    "resnext101_32x8d": ResNetSpec(Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=8),
    "wide_resnet50_2": ResNetSpec(Bottleneck, (3, 4, 6, 3), width_per_group=128),
    "wide_resnet101_2": ResNetSpec(Bottleneck, (3, 4, 23, 3), width_per_group=128),
}


def _factory(spec: ResNetSpec):
    def build(args: EncoderArgs) -> ResNetEncoder:
        return ResNetEncoder(spec, args)

    return build


for _name, _spec in VARIANTS.items():
    ENCODERS.add(_name, _factory(_spec))
