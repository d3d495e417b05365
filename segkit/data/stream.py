"""The training sample stream: sample ``n`` is a pure function of ``(seed, n)``.

Each sample picks its case and seeds the random transforms (patch position, augmentation,
albumentations) from ``numpy.random.default_rng([seed, n])``. Which worker process draws it,
how many workers there are and whether the run was interrupted do not matter, so a resumed run
continues the same stream from the first sample of the step it restarts at, and DDP ranks draw
disjoint samples of one global stream. No loader-worker RNG state needs saving.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from monai.transforms import Compose
from torch.utils.data import Dataset, Sampler


class SeededPatches(Dataset):
    """Random training patches drawn from prepared cases; index ``n`` is the sample number."""

    def __init__(self, cases: Dataset, draw: Compose, seed: int, length: int) -> None:
        self.cases, self.draw, self.seed, self.length = cases, draw, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, n: int) -> Any:
        rng = np.random.default_rng([self.seed, int(n)])
        case = int(rng.integers(len(self.cases)))
        self.draw.set_random_state(seed=int(rng.integers(2**31)))
        return self.draw(dict(self.cases[case]))  # a shallow copy: the cached arrays are never modified


@dataclass(frozen=True)
class StepLayout:
    """How optimiser steps map to sample numbers: ``world`` ranks × ``accumulate`` micro-batches × ``batch``."""

    batch: int
    accumulate: int = 1
    world: int = 1

    def sample(self, step: int, micro: int, rank: int, item: int) -> int:
        """The global sample number of ``item`` in micro-batch ``micro`` of ``rank`` at optimiser ``step``."""
        return ((step * self.accumulate + micro) * self.world + rank) * self.batch + item

    def samples_per_step(self) -> int:
        """Samples drawn by all ranks in one optimiser step."""
        return self.batch * self.accumulate * self.world


class StepSampler(Sampler[int]):
    """The sample numbers of one rank for optimiser steps ``start ≤ step < stop``, in training order."""

    def __init__(self, layout: StepLayout, start: int, stop: int, rank: int = 0) -> None:
        self.layout, self.start, self.stop, self.rank = layout, start, stop, rank

    def __iter__(self) -> Iterator[int]:
        layout = self.layout
        for step in range(self.start, self.stop):
            for micro in range(layout.accumulate):
                for item in range(layout.batch):
                    yield layout.sample(step, micro, self.rank, item)

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.layout.accumulate * self.layout.batch
