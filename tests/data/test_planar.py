"""2D images stored with a third axis of length 1 (a NIfTI of shape (X, Y, 1)) train and predict as 2D images."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.config import Config, DataCfg, ModelCfg, TrainCfg
from segkit.data.transforms import IMAGE, LABEL, training_transforms
from tests.cli_run import run_cli

X, Y = 40, 36


def _flat_dataset(root: Path, cases: int = 3) -> Path:
    """Seeded (X, Y, 1) NIfTI images with a bright disc labelled 1, in the folder layout."""
    rng = np.random.default_rng(2)
    affine = np.diag([0.8, 0.7, 2.0, 1.0])
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(cases):
        i_, j_ = np.mgrid[:X, :Y]
        disc = ((i_ - 15 - i) ** 2 + (j_ - 18) ** 2 < 60).astype(np.uint8)
        image = (100 * disc + rng.normal(0, 10, (X, Y))).astype(np.int16)
        nib.save(nib.Nifti1Image(image[..., None], affine), root / "images" / f"case_{i}.nii.gz")
        nib.save(nib.Nifti1Image(disc[..., None], affine), root / "labels" / f"case_{i}.nii.gz")
    return root


def test_training_transforms_make_x_y_1_files_2d(tmp_path: Path) -> None:
    root = _flat_dataset(tmp_path / "flat", cases=1)
    cfg = Config(data=DataCfg(root=root, format="folder", image_dims=2, spacing=None),
                 model=ModelCfg(encoder="resnet18", spatial_dims=2, num_classes=2), train=TrainCfg(patch_size=(32, 32)))
    sample = training_transforms(cfg)({IMAGE: str(root / "images/case_0.nii.gz"),
                                       LABEL: str(root / "labels/case_0.nii.gz")})
    sample = sample[0] if isinstance(sample, list) else sample
    assert tuple(sample[IMAGE].shape) == (1, 32, 32) and tuple(sample[LABEL].shape) == (1, 32, 32)


@pytest.mark.slow
def test_x_y_1_niftis_train_and_predict_on_their_exact_grid(tmp_path: Path) -> None:
    root = _flat_dataset(tmp_path / "flat")
    args = ["train", "--config", "demo_unet_resnet34.yaml"]
    for item in (f"data.root={root}", "data.format=folder", "data.image_dims=2", "data.spacing=null",
                 "model.spatial_dims=2", "model.num_classes=2", "model.encoder=resnet18",
                 "model.decoder_channels=[32,16,16,8,8]", "train.patch_size=[32,32]", "infer.roi_size=[32,32]",
                 "train.epochs=1", "train.steps_per_epoch=1", "train.batch_size=2", f"run_dir={tmp_path / 'run'}"):
        args += ["--set", item]
    trained = run_cli(*args, cwd=Path.cwd())
    assert trained.returncode == 0, trained.stderr
    done = run_cli("predict", "--checkpoint", tmp_path / "run", "--input", root / "images", "--output",
                   tmp_path / "preds", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for source in sorted((root / "images").glob("*.nii.gz")):
        image, pred = nib.load(source), nib.load(tmp_path / "preds" / source.name)
        assert pred.shape == image.shape == (X, Y, 1)
        np.testing.assert_array_equal(pred.affine, image.affine)
