"""Reproducible train/validation splits."""

from __future__ import annotations

import numpy as np

from segkit.data.msd import Case
from segkit.errors import DataError


def split_train_val(cases: list[Case], val_fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    """Hold out ``val_fraction`` of the cases (at least one) with a seeded permutation."""
    if len(cases) < 2:
        raise DataError(f"need at least 2 training cases to hold one out for validation, found {len(cases)}")
    order = np.random.default_rng(seed).permutation(len(cases))
    n_val = min(len(cases) - 1, max(1, round(len(cases) * val_fraction)))
    val_ids = set(order[:n_val].tolist())
    train = [c for i, c in enumerate(cases) if i not in val_ids]
    val = [c for i, c in enumerate(cases) if i in val_ids]
    return train, val
