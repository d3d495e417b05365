"""Test-time augmentation by mirroring: predict every combination of flips and average the logits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations

import torch

Logits = Callable[[torch.Tensor], torch.Tensor]


def mirror_sets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of ``axes`` (the empty one first): the flips to apply."""
    unique = sorted(set(axes))
    return [combo for size in range(len(unique) + 1) for combo in combinations(unique, size)]


def mirrored_logits(predict: Logits, image: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    """The mean of ``predict`` over mirrored copies of ``image`` ``(B, C, *spatial)``; ``axes`` are spatial
    axes (0 = first spatial axis), each result flipped back before averaging."""
    total: torch.Tensor | None = None
    sets = mirror_sets(axes)
    for flips in sets:
        dims = [axis + 2 for axis in flips]
        logits = predict(torch.flip(image, dims) if dims else image)
        logits = torch.flip(logits, dims) if dims else logits
        total = logits if total is None else total.add_(logits)
    return total / len(sets)
