"""The encoder contract shared by every encoder family.

An encoder is built from :class:`EncoderArgs` (one small object instead of many
parameters), returns its features from highest to lowest resolution, and declares
them in ``feature_info``. Strides are per stage and may be anisotropic, e.g.
``((2, 2, 1), (2, 2, 1), 2, 2, 2)`` for thick-slice CT; a stage's stride is the
downsampling between the previous feature (or the input) and this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

Stride = int | Sequence[int]


@dataclass(frozen=True)
class FeatureInfo:
    """One encoder output: its channel count and its per-axis downsampling factor vs the input."""

    channels: int
    reduction: tuple[int, ...]


@dataclass(frozen=True)
class EncoderArgs:
    """Everything an encoder constructor needs besides its variant."""

    spatial_dims: int = 3
    in_channels: int = 1
    norm: str = "batch"
    act: str = "relu"
    strides: tuple[Stride, ...] | None = None  # one per stage; None = 2 on every axis

    def stage_strides(self, stages: int) -> list[tuple[int, ...]]:
        """Per-stage strides as tuples of ``spatial_dims`` ints (default 2 everywhere)."""
        strides = self.strides if self.strides is not None else (2,) * stages
        if len(strides) != stages:
            raise ValueError(f"needs {stages} strides (one per encoder stage), got {len(strides)}")
        return [as_tuple(s, self.spatial_dims) for s in strides]


def as_tuple(value: Stride, spatial_dims: int) -> tuple[int, ...]:
    """A scalar or per-axis value as a tuple of ``spatial_dims`` ints."""
    if isinstance(value, int):
        return (value,) * spatial_dims
    value = tuple(int(v) for v in value)
    if len(value) != spatial_dims:
        raise ValueError(f"stride {list(value)} has {len(value)} values for {spatial_dims} spatial dims")
    return value


def cumulative(strides: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Reductions of each stage's output: running products of the per-stage strides."""
    reductions, current = [], (1,) * len(strides[0])
    for stride in strides:
        current = tuple(c * s for c, s in zip(current, stride, strict=True))
        reductions.append(current)
    return reductions


class Encoder(nn.Module):
    """Base class: ``forward(x)`` returns features from highest to lowest resolution.

    Subclasses set ``feature_info`` (one :class:`FeatureInfo` per returned tensor);
    a parametrised test checks real outputs against it for every registered encoder.
    """

    feature_info: list[FeatureInfo]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def out_channels(self) -> list[int]:
        """Channels of each returned feature."""
        return [f.channels for f in self.feature_info]

    @property
    def total_reduction(self) -> tuple[int, ...]:
        """Per-axis factor that input sizes are padded to a multiple of."""
        return self.feature_info[-1].reduction
