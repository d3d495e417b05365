"""Folds as nnU-Net makes them (``data.split: nnunet``) and folds read from a splits file (``data.splits_file``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.model_selection import KFold

from segkit.config import DataCfg
from segkit.data.cases import Case
from segkit.data.splits import choose_split, nnunet_kfold_splits
from segkit.errors import DataError


def _nnunet_reference(ids: list[str], folds: int) -> list[dict[str, list[str]]]:
    """nnunetv2.utilities.crossval_split.generate_crossval_split on the sorted ids, as nnU-Net's trainer calls it."""
    ids = list(np.sort(ids))
    kfold = KFold(n_splits=folds, shuffle=True, random_state=12345)
    return [{"train": list(np.array(ids)[train]), "val": list(np.array(ids)[val])}
            for train, val in kfold.split(ids)]


@pytest.mark.parametrize(("count", "folds"), [(5, 5), (7, 5), (11, 5), (23, 5), (131, 5), (10, 3)])
def test_nnunet_folds_equal_nnunets_own(count: int, folds: int) -> None:
    rng = np.random.default_rng(count)
    ids = [f"liver_{i}" for i in rng.permutation(count)]  # any order: nnU-Net sorts them first
    assert nnunet_kfold_splits(ids, folds) == _nnunet_reference(ids, folds)


def _cases(count: int) -> list[Case]:
    return [Case(f"case_{i:03d}", Path(f"case_{i:03d}.nii.gz")) for i in range(count)]


def test_nnunet_folds_do_not_depend_on_the_seed_and_seeded_folds_do() -> None:
    data = DataCfg(fold=1, split="nnunet")
    assert choose_split(_cases(12), data, seed=0) == choose_split(_cases(12), data, seed=5)
    train, val, splits = choose_split(_cases(12), data, seed=0)
    assert splits == _nnunet_reference([c.case_id for c in _cases(12)], 5)
    assert [c.case_id for c in val] == splits[1]["val"] and [c.case_id for c in train] == splits[1]["train"]
    seeded = DataCfg(fold=1)
    assert choose_split(_cases(12), seeded, seed=0)[2] != choose_split(_cases(12), seeded, seed=5)[2]


def test_a_splits_file_gives_its_folds(tmp_path: Path) -> None:
    splits = [{"train": ["case_000", "case_001"], "val": ["case_002"]},
              {"train": ["case_002", "case_003"], "val": ["case_000", "case_001"]}]
    path = tmp_path / "splits_final.json"
    path.write_text(json.dumps(splits))
    train, val, saved = choose_split(_cases(4), DataCfg(fold=1, splits_file=path, num_folds=5), seed=0)
    assert [c.case_id for c in train] == ["case_002", "case_003"] and [c.case_id for c in val] == ["case_000",
                                                                                                 "case_001"]
    assert saved == splits
    train, val, _ = choose_split(_cases(4), DataCfg(fold=0, splits_file=path), seed=0)
    assert len(train) == 2 and len(val) == 1  # a case in no list (case_003) is left out, as nnU-Net leaves it


@pytest.mark.parametrize(("content", "fold", "message"), [
    ("[{\"train\": [\"case_000\"], \"val\": [\"case_009\"]}]", 0,
     r"split 0 names 1 case\(s\) that are not training cases of data.root, e.g. 'case_009' — use the splits"),
    ("[{\"train\": [\"case_000\"], \"val\": [\"case_000\"]}]", 0, r"split 0 both trains and validates 'case_000'"),
    ("{\"train\": [], \"val\": []}", 0, r"must hold a JSON list of \{\"train\": \[case ids\], \"val\""),
    ("[{\"train\": [\"case_000\"], \"val\": [\"case_001\"]}]", 3,
     r"^data.fold is 3 but data.splits_file .* holds 1 split\(s\) \(folds 0..0\)$"),
    ("[{\"train\": [", 0, r"cannot read it as JSON \(Expecting value"),
])
def test_a_bad_splits_file_is_one_line_naming_it(tmp_path: Path, content: str, fold: int, message: str) -> None:
    path = tmp_path / "splits_final.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        choose_split(_cases(4), DataCfg(fold=fold, splits_file=path), seed=0)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    with pytest.raises(DataError, match=r"cannot read it as JSON \(No such file or directory\)"):
        choose_split(_cases(4), DataCfg(fold=0, splits_file=tmp_path / "missing.json"), seed=0)


def test_choosing_folds_without_a_fold_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"data.split: nnunet chooses folds: set data.fold"):
        DataCfg(split="nnunet")
    with pytest.raises(ValidationError, match=r"data.splits_file chooses folds: set data.fold"):
        DataCfg(splits_file=tmp_path / "s.json")
    assert DataCfg(fold=7, splits_file=tmp_path / "s.json").fold == 7  # the file's splits bound it, not num_folds
