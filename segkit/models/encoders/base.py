"""The encoder contract shared by every encoder family."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FeatureInfo:
    """One encoder output: its channel count and its downsampling factor vs the input."""

    channels: int
    reduction: int


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
    def max_reduction(self) -> int:
        """Input sizes must be divisible by this."""
        return max(f.reduction for f in self.feature_info)
