"""A 2D model trained on slices of the phantoms, predicting whole volumes slice by slice on their grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.cli import main

pytestmark = pytest.mark.slow


def test_2d_train_then_predict_volumes_on_their_grid(tiny_dataset: Path, tmp_path: Path) -> None:
    common = [f"data.root={tiny_dataset}", "data.spacing=[1.2,1.2,2.5]", "model.spatial_dims=2",
              "model.encoder=resnet18", "model.decoder_channels=[32,16,16,8,8]", "train.patch_size=[32,32]",
              "infer.roi_size=[32,32]", "train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=4",
              f"run_dir={tmp_path / 'run'}",
              "train.albumentations=[{name: GaussianBlur, p: 0.5}, {name: GaussNoise, p: 0.5}]"]
    args = ["train", "--config", "demo_unet_resnet34.yaml"]
    for item in common:
        args += ["--set", item]
    assert main(args) == 0
    assert main(["predict", "--checkpoint", str(tmp_path / "run"), "--input", str(tiny_dataset / "imagesTs"),
                 "--output", str(tmp_path / "preds")]) == 0
    for source in (tiny_dataset / "imagesTs").glob("*.nii.gz"):
        image, pred = nib.load(source), nib.load(tmp_path / "preds" / source.name)
        assert pred.shape == image.shape
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)


def test_native_2d_png_train_predict_evaluate(tmp_path: Path) -> None:
    import SimpleITK as sitk

    data = tmp_path / "png"
    assert main(["data", "synth", "--out", str(data), "--dims", "2", "--cases", "6",  # the folder layout by default
                 "--size", "16", "64", "80", "--test", "2", "--seed", "4"]) == 0  # non-square: transposes show
    args = ["train", "--config", "demo_unet_resnet34.yaml"]
    for item in (f"data.root={data}", "data.format=folder", "data.image_dims=2", "data.spacing=null",
                 "model.spatial_dims=2", "model.encoder=resnet18", "model.decoder_channels=[32,16,16,8,8]",
                 "train.patch_size=[64,64]", "infer.roi_size=[64,64]", "train.epochs=1", "train.steps_per_epoch=2",
                 "train.batch_size=2", f"run_dir={tmp_path / 'run'}", "train.augment.rot90=0.5"):
        args += ["--set", item]
    assert main(args) == 0
    assert main(["predict", "--checkpoint", str(tmp_path / "run"), "--input", str(data / "imagesTs"),
                 "--output", str(tmp_path / "preds")]) == 0
    for source in (data / "imagesTs").glob("*.png"):
        image, pred = sitk.ReadImage(str(source)), sitk.ReadImage(str(tmp_path / "preds" / source.name))
        assert pred.GetSize() == image.GetSize() and pred.GetPixelID() == sitk.sitkUInt8
    assert main(["evaluate", "--pred", str(tmp_path / "preds"), "--ref", str(data / "labelsTs"),
                 "--num-classes", "4"]) == 0
