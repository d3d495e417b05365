"""``segkit train`` checks the dataset first: label values the model cannot represent stop it before run_dir exists."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segkit.cli import main
from segkit.data.synth import write_dataset

COMMON = ["model.encoder=resnet18", "model.decoder_channels=[32,16,16,8,8]", "train.batch_size=2",
          "train.epochs=1", "train.steps_per_epoch=1"]


def _set_value(path: Path, old: int, new: int) -> None:
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    array[array == old] = new
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))


def _train(overrides: list[str]) -> int:
    args = ["train", "--config", "demo_unet_resnet34.yaml"]
    for item in COMMON + overrides:
        args += ["--set", item]
    return main(args)


def test_a_3d_folder_dataset_with_labels_beyond_the_model_classes_is_refused(tmp_path: Path, capsys,
                                                                             monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    msd, root = tmp_path / "msd", tmp_path / "folder"
    write_dataset(msd, cases=3, seed=6, size_dhw=(8, 32, 32), test_cases=1)
    shutil.copytree(msd / "imagesTr", root / "images")
    shutil.copytree(msd / "labelsTr", root / "labels")
    bad = root / "labels" / "phantom_001.nii.gz"
    _set_value(bad, 1, 5)
    assert np.isin(5, sitk.GetArrayFromImage(sitk.ReadImage(str(bad))))
    run_dir = tmp_path / "run"
    code = _train([f"data.root={root}", "data.format=folder", "data.spacing=[1.2,1.2,2.5]",
                   "train.patch_size=[32,32,16]", "infer.roi_size=[32,32,16]", f"run_dir={run_dir}"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and not run_dir.exists()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"error: {bad}: label holds values 5 outside 0..3 (model.num_classes is 4) — remap them or "
                          "set model.num_classes (1 problem(s) in the dataset")


@pytest.mark.parametrize("value", [4, 200])
def test_a_2d_dataset_is_checked_at_train_time(tmp_path: Path, capsys, monkeypatch, value: int) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "png"
    write_dataset(root, cases=3, seed=6, size_dhw=(8, 32, 32), test_cases=1, layout="folder", dims=2)
    bad = root / "labels" / "phantom_000.png"
    _set_value(bad, 2, value)
    assert np.isin(value, sitk.GetArrayFromImage(sitk.ReadImage(str(bad))))
    run_dir = tmp_path / "run"
    code = _train([f"data.root={root}", "data.format=folder", "data.image_dims=2", "data.spacing=null",
                   "model.spatial_dims=2", "train.patch_size=[32,32]", "infer.roi_size=[32,32]", f"run_dir={run_dir}"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and not run_dir.exists() and len(err.splitlines()) == 1
    assert err.startswith(f"error: {bad}: label holds values {value} outside 0..3 (model.num_classes is 4) — remap "
                          "them or set model.num_classes (1 problem(s) in the dataset")
