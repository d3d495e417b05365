"""UNet decoder: per stage upsample → fuse the encoder skip → two conv-norm-ReLU layers.

The stages are derived from the encoder's declared ``feature_info``: one stage per
encoder feature, the deepest first; the last stage returns to full resolution and
has no skip. Channel bookkeeping follows smp: lists of (in, skip, out) channels
zipped into blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from segkit.models.encoders.base import FeatureInfo
from segkit.models.layers import ConvNormAct
from segkit.registry import FUSIONS, UPSAMPLERS


class DecoderStage(nn.Module):
    """Upsample by ``scale``, fuse an optional skip, refine with two convolutions."""

    def __init__(self, spatial_dims: int, in_ch: int, skip_ch: int, out_ch: int, scale: int,
                 upsample: str, fusion: str, norm_name: str) -> None:
        super().__init__()
        self.upsample = UPSAMPLERS.get(upsample)(spatial_dims, in_ch, out_ch, scale)
        self.fusion = FUSIONS.get(fusion)(spatial_dims, out_ch, skip_ch) if skip_ch else None
        fused_ch = self.fusion.out_channels if self.fusion is not None else out_ch
        self.conv1 = ConvNormAct(spatial_dims, fused_ch, out_ch, norm_name)
        self.conv2 = ConvNormAct(spatial_dims, out_ch, out_ch, norm_name)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.upsample(x)
        if self.fusion is not None:
            x = self.fusion(x, skip)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """All decoder stages for an encoder with the given ``feature_info``."""

    def __init__(self, feature_info: Sequence[FeatureInfo], channels: Sequence[int], spatial_dims: int,
                 upsample: str, fusion: str, norm_name: str) -> None:
        super().__init__()
        deep_first = list(reversed(feature_info))
        if len(channels) != len(deep_first):
            raise ValueError(f"needs {len(deep_first)} decoder channel values, got {len(channels)}")
        in_chs = [deep_first[0].channels, *channels[:-1]]
        skip_chs = [f.channels for f in deep_first[1:]] + [0]
        reductions = [f.reduction for f in deep_first] + [1]
        scales = [a // b for a, b in pairwise(reductions)]
        self.stages = nn.ModuleList(
            DecoderStage(spatial_dims, i, s, o, scale, upsample, fusion, norm_name)
            for i, s, o, scale in zip(in_chs, skip_chs, channels, scales, strict=True)
        )
        self.out_channels = channels[-1]

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        deep_first = list(reversed(features))
        x = deep_first[0]
        skips = [*deep_first[1:], None]
        for stage, skip in zip(self.stages, skips, strict=True):
            x = stage(x, skip)
        return x
