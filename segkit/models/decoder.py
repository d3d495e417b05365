"""UNet decoder: per stage upsample → fuse the encoder skip → two conv-norm-act layers.

The stages are derived from the encoder's declared ``feature_info``: one stage per
encoder feature, the deepest first; each stage upsamples by the ratio of
consecutive reductions (anisotropic where the encoder's strides are), and the
last stage returns to full resolution without a skip. Channel bookkeeping follows
smp: lists of (in, skip, out) channels zipped into blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn

from segkit.models.encoders.base import FeatureInfo
from segkit.models.layers import ConvNormAct
from segkit.registry import FUSIONS, UPSAMPLERS


@dataclass(frozen=True)
class DecoderArgs:
    """Decoder choices: stage channels (deepest first), upsampling mode, skip fusion, norm and activation."""

    channels: tuple[int, ...]
    upsample: str = "transposed"
    fusion: str = "concat"
    norm: str = "batch"
    act: str = "relu"


class DecoderStage(nn.Module):
    """Upsample by ``scale``, fuse an optional skip, refine with two convolutions."""

    def __init__(self, spatial_dims: int, in_ch: int, skip_ch: int, out_ch: int, scale: tuple[int, ...],
                 args: DecoderArgs) -> None:
        super().__init__()
        self.upsample = UPSAMPLERS.get(args.upsample)(spatial_dims, in_ch, out_ch, scale)
        self.fusion = FUSIONS.get(args.fusion)(spatial_dims, out_ch, skip_ch) if skip_ch else None
        fused_ch = self.fusion.out_channels if self.fusion is not None else out_ch
        self.conv1 = ConvNormAct(spatial_dims, fused_ch, out_ch, args.norm, args.act)
        self.conv2 = ConvNormAct(spatial_dims, out_ch, out_ch, args.norm, args.act)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.upsample(x)
        if self.fusion is not None:
            x = self.fusion(x, skip)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """All decoder stages for an encoder with the given ``feature_info``."""

    def __init__(self, feature_info: Sequence[FeatureInfo], spatial_dims: int, args: DecoderArgs) -> None:
        super().__init__()
        deep_first = list(reversed(feature_info))
        if len(args.channels) != len(deep_first):
            raise ValueError(f"needs {len(deep_first)} decoder channel values, got {len(args.channels)}")
        in_chs = [deep_first[0].channels, *args.channels[:-1]]
        skip_chs = [f.channels for f in deep_first[1:]] + [0]
        reductions = [f.reduction for f in deep_first] + [(1,) * spatial_dims]
        scales = [tuple(a // b for a, b in zip(lo, hi, strict=True)) for lo, hi in pairwise(reductions)]
        self.stages = nn.ModuleList(
            DecoderStage(spatial_dims, i, s, o, scale, args)
            for i, s, o, scale in zip(in_chs, skip_chs, args.channels, scales, strict=True)
        )
        self.stage_channels = list(args.channels)
        self.stage_reductions = reductions[1:]  # each stage's output, deepest first (the last is full resolution)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Every stage's output, deepest first (the last one is at full resolution)."""
        deep_first = list(reversed(features))
        x = deep_first[0]
        outputs = []
        for stage, skip in zip(self.stages, [*deep_first[1:], None], strict=True):
            x = stage(x, skip)
            outputs.append(x)
        return outputs
