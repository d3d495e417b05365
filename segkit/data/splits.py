"""Reproducible train/validation splits: a held-out fraction, k seeded folds, nnU-Net's own folds, or the folds of
a splits file (nnU-Net's ``splits_final.json``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segkit.config import DataCfg
from segkit.data.cases import Case
from segkit.errors import DataError

Split = dict[str, list[str]]
NNUNET_SPLIT_SEED = 12345  # nnunetv2.utilities.crossval_split.generate_crossval_split's default, used by its trainer


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
    return _folds(case_ids, folds, np.random.default_rng(seed).permutation)


def nnunet_kfold_splits(case_ids: list[str], folds: int) -> list[Split]:
    """nnU-Net v2's folds for these cases, as its trainer makes ``splits_final.json`` when there is none: scikit-learn's
    ``KFold(folds, shuffle=True, random_state=12345)`` over the sorted case ids (``RandomState(12345).shuffle`` of
    their indices, cut into folds whose first ``n % folds`` hold one case more); each list in id order."""
    return _folds(case_ids, folds, np.random.RandomState(NNUNET_SPLIT_SEED).permutation)


def _folds(case_ids: list[str], folds: int, permutation: Callable[[int], np.ndarray]) -> list[Split]:
    """The sorted ids' indices in the order ``permutation(n)`` gives, cut into ``folds`` validation chunks (the first
    ``n % folds`` one case larger); train and val lists in id order."""
    if len(case_ids) < folds:
        raise DataError(f"data.num_folds is {folds} but there are only {len(case_ids)} training cases")
    ids = sorted(case_ids)
    splits = []
    for chunk in np.array_split(permutation(len(ids)), folds):
        val = set(chunk.tolist())
        splits.append({"train": [c for i, c in enumerate(ids) if i not in val],
                       "val": [c for i, c in enumerate(ids) if i in val]})
    return splits


def read_splits_file(path: Path, case_ids: list[str]) -> list[Split]:
    """The splits of ``path`` (``[{"train": [ids], "val": [ids]}, ...]``, nnU-Net's ``splits_final.json`` or a run's
    ``splits.json``), checked against the dataset's training cases: one-line errors naming the file."""
    try:
        splits = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = getattr(exc, "strerror", None) or text
        raise DataError(f"data.splits_file {path}: cannot read it as JSON ({reason})") from None
    shape = "a JSON list of {\"train\": [case ids], \"val\": [case ids]}, as nnU-Net's splits_final.json"
    if not isinstance(splits, list) or not splits or not all(
            isinstance(s, dict) and set(s) >= {"train", "val"} and all(
                isinstance(s[k], list) and all(isinstance(c, str) for c in s[k]) for k in ("train", "val"))
            for s in splits):
        raise DataError(f"data.splits_file {path}: must hold {shape}")
    known = set(case_ids)
    for number, split in enumerate(splits):
        unknown = sorted(set(split["train"] + split["val"]) - known)
        if unknown:
            raise DataError(f"data.splits_file {path}: split {number} names {len(unknown)} case(s) that are not "
                            f"training cases of data.root, e.g. '{unknown[0]}' — use the splits of this dataset")
        both = sorted(set(split["train"]) & set(split["val"]))
        if both:
            raise DataError(f"data.splits_file {path}: split {number} both trains and validates '{both[0]}'")
    return [{"train": list(s["train"]), "val": list(s["val"])} for s in splits]


def choose_split(cases: list[Case], data: DataCfg, seed: int) -> tuple[list[Case], list[Case], list[Split]]:
    """Training and validation cases for ``data.fold`` (or the fraction split), and all splits to save."""
    if data.fold is None:
        train, val = split_train_val(cases, data.val_fraction, seed)
        return train, val, [{"train": [c.case_id for c in train], "val": [c.case_id for c in val]}]
    ids = [c.case_id for c in cases]
    if data.splits_file is not None:
        splits = read_splits_file(data.splits_file, ids)
        if data.fold >= len(splits):
            raise DataError(f"data.fold is {data.fold} but data.splits_file {data.splits_file} holds "
                            f"{len(splits)} split(s) (folds 0..{len(splits) - 1})")
    elif data.split == "nnunet":
        splits = nnunet_kfold_splits(ids, data.num_folds)
    else:
        splits = kfold_splits(ids, data.num_folds, seed)
    train, val = set(splits[data.fold]["train"]), set(splits[data.fold]["val"])
    return [c for c in cases if c.case_id in train], [c for c in cases if c.case_id in val], splits
