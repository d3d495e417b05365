"""Dataset layouts (MSD, nnU-Net, folder/CSV), multi-channel cases and k-fold splits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from segkit.config import Config, DataCfg, ModelCfg, TrainCfg
from segkit.data.cases import Case
from segkit.data.index import load_dataset
from segkit.data.splits import choose_split, kfold_splits
from segkit.data.synth import write_dataset
from segkit.data.transforms import training_transforms
from segkit.errors import DataError
from tests.conftest import TINY_SIZE


@pytest.fixture(scope="module")
def nnunet_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nnunet")
    write_dataset(root, cases=4, seed=2, size_dhw=TINY_SIZE, test_cases=1, layout="nnunet", channels=2)
    return root


def test_msd_index(tiny_dataset: Path) -> None:
    index = load_dataset(tiny_dataset, "msd")
    assert [c.case_id for c in index.training] == ["phantom_000", "phantom_001", "phantom_002", "phantom_003"]
    assert [c.case_id for c in index.test] == ["phantom_004"] and index.test[0].label is not None
    assert (index.num_classes, index.channels) == (4, 1)


def test_nnunet_index_groups_channels(nnunet_dataset: Path) -> None:
    index = load_dataset(nnunet_dataset, "nnunet")
    assert (index.num_classes, index.channels) == (4, 2)
    assert len(index.training) == 3 and len(index.test) == 1
    case = index.training[0]
    assert [p.name for p in case.images] == ["phantom_000_0000.nii.gz", "phantom_000_0001.nii.gz"]
    assert case.label.name == "phantom_000.nii.gz"


def _copy_without(source: Path, target: Path, relative: str) -> Path:
    """A copy of the dataset ``source`` at ``target`` with one file removed."""
    shutil.copytree(source, target)
    (target / relative).unlink()
    return target


def test_nnunet_missing_channel_names_the_case(nnunet_dataset: Path, tmp_path: Path) -> None:
    broken = _copy_without(nnunet_dataset, tmp_path / "broken", "imagesTr/phantom_001_0001.nii.gz")
    with pytest.raises(DataError, match=r"phantom_001: has channels \[0\] but .* declares 2"):
        load_dataset(broken, "nnunet")


def test_nnunet_missing_label_is_an_error(nnunet_dataset: Path, tmp_path: Path) -> None:
    broken = _copy_without(nnunet_dataset, tmp_path / "broken", "labelsTr/phantom_002.nii.gz")
    with pytest.raises(DataError, match=r"phantom_002.nii.gz: missing label for training case 'phantom_002'"):
        load_dataset(broken, "nnunet")


@pytest.mark.parametrize(("labels", "message"), [
    ({"background": 0, "organ": 1, "whole": [1, 2]}, r"label 'whole' is \[1, 2\], not one integer — segkit trains one "
                                                      r"class per label value, not nnU-Net regions"),
    ({"background": 0, "organ": 2}, r"'labels' values are \[0, 2\]; they must be 0, 1, … 1 \(background 0\)"),
    ({"background": 0, "organ": 1, "ignore": 2}, r"label 'ignore' \(2\) marks voxels nnU-Net leaves out of training, "
                                                  r"which segkit does not support — set those voxels to a class"),
])
def test_nnunet_labels_must_be_one_value_each_from_zero(nnunet_dataset: Path, tmp_path: Path, labels: dict,
                                                        message: str) -> None:
    root = Path(shutil.copytree(nnunet_dataset, tmp_path / "ds"))
    manifest = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    (root / "dataset.json").write_text(json.dumps({**manifest, "labels": labels}), encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_dataset(root, "nnunet")


def test_multichannel_case_is_stacked_as_channels(nnunet_dataset: Path) -> None:
    cfg = Config(data=DataCfg(root=nnunet_dataset, format="nnunet", spacing=(1.2, 1.2, 2.5)),
                 model=ModelCfg(in_channels=2), train=TrainCfg(patch_size=(32, 32, 16)))
    case = load_dataset(nnunet_dataset, "nnunet").training[0]
    sample = training_transforms(cfg)({"image": [str(p) for p in case.images], "label": str(case.label)})[0]
    assert sample["image"].shape == (2, 32, 32, 16) and sample["label"].shape == (1, 32, 32, 16)
    assert not (sample["image"][0] == sample["image"][1]).all()


def _folder_dataset(source: Path, root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for path in sorted((source / "imagesTr").glob("*.nii.gz")):
        shutil.copy(path, root / "images" / path.name)
        shutil.copy(source / "labelsTr" / path.name, root / "labels" / path.name)
    return root


def test_folder_index_matches_images_and_labels_by_name(tiny_dataset: Path, tmp_path: Path) -> None:
    root = _folder_dataset(tiny_dataset, tmp_path / "folder")
    index = load_dataset(root, "folder")
    assert [c.case_id for c in index.training] == ["phantom_000", "phantom_001", "phantom_002", "phantom_003"]
    assert all(c.label.parent == root / "labels" and c.label.name == c.image.name for c in index.training)
    (root / "labels" / "phantom_001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"phantom_001.nii.gz: no label named phantom_001"):
        load_dataset(root, "folder")


@pytest.mark.parametrize("header", ["image", "case_id,image", "image_0,image_1", "case_id,label"])
def test_a_csv_without_an_image_or_a_label_column_names_the_columns(header: str, tmp_path: Path) -> None:
    (tmp_path / "dataset.csv").write_text(f"{header}\n" + ",".join(["x.nii.gz"] * len(header.split(","))) + "\n")
    expected = r"dataset.csv: needs columns 'image' \(or image_0, image_1, ...\) and 'label'$"
    with pytest.raises(DataError, match=expected):
        load_dataset(tmp_path, "folder")


def test_folder_csv_with_channels_and_path_checks(nnunet_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "csv"
    shutil.copytree(nnunet_dataset, root)
    (root / "dataset.csv").write_text(
        "case_id,image_0,image_1,label\n"
        "a,imagesTr/phantom_000_0000.nii.gz,imagesTr/phantom_000_0001.nii.gz,labelsTr/phantom_000.nii.gz\n"
        "b,imagesTr/phantom_001_0000.nii.gz,imagesTr/phantom_001_0001.nii.gz,labelsTr/phantom_001.nii.gz\n")
    index = load_dataset(root, "folder")
    assert [c.case_id for c in index.training] == ["a", "b"] and index.channels == 2
    (root / "dataset.csv").write_text("image,label\n../outside.nii.gz,labelsTr/phantom_000.nii.gz\n")
    with pytest.raises(DataError, match="points outside the dataset folder"):
        load_dataset(root, "folder")
    (root / "dataset.csv").write_text(
        "case_id,image,label\nx,imagesTr/phantom_000_0000.nii.gz,labelsTr/phantom_000.nii.gz\n"
        "x,imagesTr/phantom_001_0000.nii.gz,labelsTr/phantom_001.nii.gz\n")
    with pytest.raises(DataError, match="case id 'x' appears twice"):
        load_dataset(root, "folder")


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.root .*: no such folder"):
        load_dataset(tmp_path / "nope", "msd")


def test_kfold_validates_every_case_exactly_once_and_is_seeded() -> None:
    ids = [f"case{i}" for i in range(11)]
    splits = kfold_splits(ids, 5, seed=3)
    validated = [c for split in splits for c in split["val"]]
    assert sorted(validated) == sorted(ids)
    for split in splits:
        assert set(split["train"]).isdisjoint(split["val"]) and len(split["train"]) + len(split["val"]) == 11
    assert kfold_splits(ids, 5, seed=3) == splits and kfold_splits(ids, 5, seed=4) != splits
    with pytest.raises(DataError, match="only 3 training cases"):
        kfold_splits(ids[:3], 5, seed=0)


def test_choose_split_picks_the_fold() -> None:
    cases = [Case(f"c{i}", Path(f"c{i}.nii.gz")) for i in range(10)]
    train, val, splits = choose_split(cases, DataCfg(fold=2, num_folds=5), seed=0)
    assert [c.case_id for c in val] == splits[2]["val"] and len(train) == 8
    train, val, splits = choose_split(cases, DataCfg(val_fraction=0.2), seed=0)
    assert len(val) == 2 and len(splits) == 1


def _without_training_cases(layout: str, root: Path) -> tuple[str, str]:
    """A dataset of ``layout`` at ``root`` whose held-out cases remain but whose training cases are gone;
    returns the layout name and the expected error."""
    if layout in ("msd", "nnunet"):
        write_dataset(root, cases=2, seed=1, size_dhw=(4, 16, 16), test_cases=1, layout=layout)
    if layout == "msd":
        manifest = json.loads((root / "dataset.json").read_text())
        (root / "dataset.json").write_text(json.dumps({**manifest, "training": [], "numTraining": 0}))
        return "msd", (f"{root / 'dataset.json'}: no training cases: 'training' lists none; add cases to "
                       "imagesTr/labelsTr and list them under 'training'")
    if layout == "nnunet":
        for path in [*(root / "imagesTr").iterdir(), *(root / "labelsTr").iterdir()]:
            path.unlink()
        return "nnunet", (f"{root / 'imagesTr'}: no training cases: no images named CASE_0000.nii.gz; add cases to "
                          "imagesTr/labelsTr")
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    if layout == "csv":
        (root / "dataset.csv").write_text("image,label\n")
        return "folder", f"{root / 'dataset.csv'}: no training cases: no rows below the header; add one line per case"
    return "folder", f"{root / 'images'}: no training cases: no image files; add cases to images/ and labels/"


@pytest.mark.parametrize("layout", ["msd", "nnunet", "folder", "csv"])
def test_a_dataset_without_training_cases_is_an_error(layout: str, tmp_path: Path, capsys) -> None:
    from segkit.cli import main

    root = tmp_path / "data"
    name, expected = _without_training_cases(layout, root)
    with pytest.raises(DataError) as caught:
        load_dataset(root, name)
    assert str(caught.value) == expected
    assert main(["data", "check", str(root), "--format", name]) == 1
    assert capsys.readouterr().err.strip() == f"error: {expected}"


def test_data_check_detects_the_layout(tiny_dataset: Path, nnunet_dataset: Path, tmp_path: Path) -> None:
    from segkit.cli import main
    from segkit.data.index import detect_layout

    folder = tmp_path / "png"
    write_dataset(folder, cases=4, seed=0, size_dhw=(4, 32, 32), test_cases=1, layout="folder", dims=2)
    csv = tmp_path / "csv"
    csv.mkdir()
    (csv / "dataset.csv").write_text("image,label\n")
    assert [detect_layout(p) for p in (tiny_dataset, nnunet_dataset, folder, csv, tmp_path / "none")] == [
        "msd", "nnunet", "folder", "folder", "msd"]
    report = tmp_path / "report.json"
    assert main(["data", "check", str(folder), "--json", str(report)]) == 0  # no --format: was read as MSD
    assert json.loads(report.read_text())["fingerprint"]["num_cases"] == 3
