"""DenseNet-BC encoders (121/169/201/264) in 2D or 3D (torchvision parameter layout).

One class covers the family; each variant is one row of ``VARIANTS``. Parameter
names (``features.conv0``, ``features.denseblock1.denselayer1.norm1`` …,
``features.transition1.conv``, ``features.norm5``) follow torchvision so ImageNet
state dicts load into the 2D encoder (see ``segkit.models.pretrained``).

Five stages: conv0, pool0 and the pooling of transitions 1–3, each with its stride
from ``EncoderArgs.stage_strides(5)``. As in segmentation_models_pytorch, the skip of
dense blocks 1–3 is taken inside the following transition, after its norm and
activation and before its 1×1 convolution and pooling; the last feature is
``norm5`` + activation after dense block 4.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

import torch
from monai.networks.layers.factories import Pool
from torch import nn

from segkit.models.encoders.base import Encoder, EncoderArgs, FeatureInfo, cumulative
from segkit.models.layers import act, conv, norm
from segkit.registry import ENCODERS

BN_SIZE = 4  # bottleneck width of a dense layer = BN_SIZE · growth rate
COMPRESSION = 0.5  # transitions keep this fraction of the channels


@dataclass(frozen=True)
class DenseNetSpec:
    """One DenseNet-BC variant: growth rate, layers per dense block, stem channels."""

    growth_rate: int
    block_config: tuple[int, int, int, int]
    init_features: int = 64


class DenseLayer(nn.Module):
    """norm-act-1×1 conv to ``BN_SIZE·growth`` channels, then norm-act-3×3 conv to ``growth`` new channels."""

    def __init__(self, args: EncoderArgs, in_ch: int, growth: int) -> None:
        super().__init__()
        d, width = args.spatial_dims, BN_SIZE * growth
        self.norm1 = norm(args.norm, d, in_ch)
        self.relu1 = act(args.act)
        self.conv1 = conv(d, in_ch, width, 1)
        self.norm2 = norm(args.norm, d, width)
        self.relu2 = act(args.act)
        self.conv2 = conv(d, width, growth, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    """``layers`` dense layers; each sees the concatenation of the block input and all earlier outputs."""

    def __init__(self, args: EncoderArgs, in_ch: int, layers: int, growth: int) -> None:
        super().__init__()
        for j in range(layers):
            self.add_module(f"denselayer{j + 1}", DenseLayer(args, in_ch + j * growth, growth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """norm-act-1×1 conv (compressing channels)-average pool with kernel = stride."""

    def __init__(self, args: EncoderArgs, in_ch: int, out_ch: int, stride: tuple[int, ...]) -> None:
        d = args.spatial_dims
        super().__init__(OrderedDict(
            norm=norm(args.norm, d, in_ch),
            relu=act(args.act),
            conv=conv(d, in_ch, out_ch, 1),
            pool=Pool[Pool.AVG, d](kernel_size=stride, stride=stride),
        ))

    def skip_and_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The activated input (the encoder's skip feature) and the transition's output."""
        skip = self.relu(self.norm(x))
        return skip, self.pool(self.conv(skip))


class DenseNetEncoder(Encoder):
    """DenseNet-BC encoder returning the stem, the skips of dense blocks 1–3 and the final feature."""

    def __init__(self, spec: DenseNetSpec, args: EncoderArgs) -> None:
        super().__init__()
        d, strides = args.spatial_dims, args.stage_strides(5)
        ch = spec.init_features
        self.features = nn.Sequential(OrderedDict(
            conv0=conv(d, args.in_channels, ch, 7, strides[0]),
            norm0=norm(args.norm, d, ch),
            relu0=act(args.act),
            pool0=Pool[Pool.MAX, d](kernel_size=3, stride=strides[1], padding=1),
        ))
        channels = [ch]
        for i, layers in enumerate(spec.block_config, start=1):
            self.features.add_module(f"denseblock{i}", DenseBlock(args, ch, layers, spec.growth_rate))
            ch += layers * spec.growth_rate
            channels.append(ch)
            if i < len(spec.block_config):
                out_ch = int(ch * COMPRESSION)
                self.features.add_module(f"transition{i}", Transition(args, ch, out_ch, strides[i + 1]))
                ch = out_ch
        self.features.add_module("norm5", norm(args.norm, d, ch))
        self.features.add_module("relu5", act(args.act))
        # a transition's skip is taken before its pool, so feature i has the reduction of stage i
        self.feature_info = [FeatureInfo(c, r) for c, r in zip(channels, cumulative(strides), strict=True)]
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.features
        x = f.relu0(f.norm0(f.conv0(x)))
        features = [x]
        x = f.pool0(x)
        for i in (1, 2, 3):
            skip, x = getattr(f, f"transition{i}").skip_and_forward(getattr(f, f"denseblock{i}")(x))
            features.append(skip)
        features.append(f.relu5(f.norm5(f.denseblock4(x))))
        return features


def _init_weights(module: nn.Module) -> None:
    """torchvision's DenseNet init: Kaiming-normal convs, norms with weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


VARIANTS = {
    "densenet121": DenseNetSpec(32, (6, 12, 24, 16)),
    "densenet169": DenseNetSpec(32, (6, 12, 32, 32)),
    "densenet201": DenseNetSpec(32, (6, 12, 48, 32)),
    "densenet264": DenseNetSpec(32, (6, 12, 64, 48)),
}

for _name, _spec in VARIANTS.items():
    ENCODERS.add(_name, partial(DenseNetEncoder, _spec))
