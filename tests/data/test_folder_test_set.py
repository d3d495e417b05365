"""The folder layout's held-out (test) cases: ``imagesTs/`` with ``labelsTs/``, or ``split: test`` rows of a CSV."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from segkit.pipelines.data_check import check_dataset, fingerprints

from segkit.data.index import load_dataset
from segkit.data.synth import write_dataset
from segkit.errors import DataError


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``segkit data synth --dims 2``: three training phantoms in images/ + labels/, one in imagesTs/ + labelsTs/."""
    root = tmp_path_factory.mktemp("png") / "data"
    write_dataset(root, cases=4, seed=5, size_dhw=(8, 32, 32), test_cases=1, layout="folder", dims=2)
    return root


@pytest.fixture
def root(pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # data check's cache
    return Path(shutil.copytree(pristine, tmp_path / "dataset"))


def test_images_ts_are_the_test_cases_with_labels_ts_as_references(root: Path) -> None:
    index = load_dataset(root, "folder")
    assert [c.case_id for c in index.training] == ["phantom_000", "phantom_001", "phantom_002"]
    assert [(c.case_id, c.image, c.label) for c in index.test] == [
        ("phantom_003", root / "imagesTs" / "phantom_003.png", root / "labelsTs" / "phantom_003.png")]


def test_a_test_case_without_a_label_has_no_reference(root: Path) -> None:
    (root / "labelsTs" / "phantom_003.png").unlink()
    assert [(c.case_id, c.label) for c in load_dataset(root, "folder").test] == [("phantom_003", None)]
    shutil.rmtree(root / "labelsTs")
    assert [(c.case_id, c.label) for c in load_dataset(root, "folder").test] == [("phantom_003", None)]
    shutil.rmtree(root / "imagesTs")
    assert load_dataset(root, "folder").test == []


def test_a_label_with_another_suffix_pairs_by_case_id(root: Path) -> None:
    (root / "labelsTs" / "phantom_003.png").rename(root / "labelsTs" / "phantom_003.tif")
    assert load_dataset(root, "folder").test[0].label == root / "labelsTs" / "phantom_003.tif"


def test_a_case_both_training_and_test_is_refused(root: Path) -> None:
    shutil.copy(root / "images" / "phantom_000.png", root / "imagesTs" / "phantom_000.png")
    with pytest.raises(DataError, match=r"imagesTs: case id 'phantom_000' appears twice"):
        load_dataset(root, "folder")


def test_data_check_checks_the_test_cases_and_fingerprints_them_apart(root: Path) -> None:
    index = load_dataset(root, "folder")
    result, fingerprint = check_dataset(root, "folder")
    assert result.ok and result.cases_checked == 4
    assert fingerprint.num_cases == 3  # training settings come from the training cases only
    assert fingerprints(result, index).test.num_cases == 1


def test_csv_rows_marked_test_are_the_test_cases(root: Path) -> None:
    (root / "dataset.csv").write_text(
        "case_id,image,label,split\n"
        "a,images/phantom_000.png,labels/phantom_000.png,train\n"
        "b,images/phantom_001.png,labels/phantom_001.png,\n"
        "c,imagesTs/phantom_003.png,labelsTs/phantom_003.png,test\n"
        "d,images/phantom_002.png,,Test\n")
    index = load_dataset(root, "folder")
    assert [c.case_id for c in index.training] == ["a", "b"]
    assert [(c.case_id, c.label) for c in index.test] == [("c", (root / "labelsTs" / "phantom_003.png").resolve()),
                                                          ("d", None)]
    (root / "dataset.csv").write_text("image,label\nimages/phantom_000.png,labels/phantom_000.png\n")
    assert load_dataset(root, "folder").test == []  # a CSV lists every case: imagesTs/ is not read
    (root / "dataset.csv").write_text("image,label,split\nimages/phantom_000.png,labels/phantom_000.png,val\n")
    with pytest.raises(DataError, match=r"dataset.csv: line 2 split is 'val'; write train \(or leave it empty\) or "
                                        "test"):
        load_dataset(root, "folder")
    (root / "dataset.csv").write_text("image,label,split\nimages/phantom_000.png,,train\n")
    with pytest.raises(DataError, match="line 2 label must be a relative file path"):
        load_dataset(root, "folder")  # a training row still needs its label
