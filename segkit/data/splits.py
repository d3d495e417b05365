"""Reproducible train/validation splits: a held-out fraction, or k folds as in nnU-Net."""

from __future__ import annotations

import numpy as np

from segkit.data.cases import Case
from segkit.errors import DataError

Split = dict[str, list[str]]


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


def kfold_splits(case_ids: list[str], folds: int, seed: int) -> list[Split]:
    """``folds`` splits (nnU-Net's splits_final.json shape): each case is validated in exactly one fold."""
    if len(case_ids) < folds:
        raise DataError(f"data.num_folds is {folds} but there are only {len(case_ids)} training cases")
    order = np.random.default_rng(seed).permutation(sorted(case_ids))
    chunks = np.array_split(order, folds)
    return [{"train": sorted(set(order) - set(chunk)), "val": sorted(chunk.tolist())} for chunk in chunks]


def choose_split(cases: list[Case], fold: int | None, folds: int, val_fraction: float,
                 seed: int) -> tuple[list[Case], list[Case], list[Split]]:
    """Training and validation cases for ``fold`` (or the fraction split), and all splits to save."""
    if fold is None:
        train, val = split_train_val(cases, val_fraction, seed)
        return train, val, [{"train": [c.case_id for c in train], "val": [c.case_id for c in val]}]
    splits = kfold_splits([c.case_id for c in cases], folds, seed)
    chosen = set(splits[fold]["val"])
    return [c for c in cases if c.case_id not in chosen], [c for c in cases if c.case_id in chosen], splits
