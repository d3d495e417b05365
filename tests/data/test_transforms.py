"""Training transforms: seeded determinism and each augmentation actually applied."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from segkit.config import load_config
from segkit.data.index import load_dataset
from segkit.data.transforms import seed_everything, training_transforms

AUG_OFF = ["train.augment.flip=0", "train.augment.affine=0", "train.augment.gamma=0", "train.augment.noise=0",
           "train.augment.contrast=0"]


def _sample(root: Path, overrides: list[str], seed: int = 0) -> dict:
    cfg = load_config("demo_unet_resnet34.yaml", [f"data.root={root}", "data.spacing=[1.2,1.2,2.5]",
                                                  "train.patch_size=[32,32,16]", f"seed={seed}", *overrides])
    case = load_dataset(root, "msd").training[0]
    return training_transforms(cfg)({"image": str(case.image), "label": str(case.label)})[0]


def test_same_seed_same_patch_other_seed_other_patch(tiny_dataset: Path) -> None:
    augment = ["train.augment.affine=1", "train.augment.gamma=1", "train.augment.noise=1"]
    first, again = _sample(tiny_dataset, augment), _sample(tiny_dataset, augment)
    torch.testing.assert_close(first["image"].as_tensor(), again["image"].as_tensor())
    other = _sample(tiny_dataset, augment, seed=1)
    assert not torch.equal(first["image"].as_tensor(), other["image"].as_tensor())


@pytest.mark.parametrize("name", ["gamma", "noise", "contrast", "bias_field"])
def test_intensity_augmentation_changes_only_the_image(tiny_dataset: Path, name: str) -> None:
    plain = _sample(tiny_dataset, AUG_OFF)
    augmented = _sample(tiny_dataset, [*AUG_OFF, f"train.augment.{name}=1"])
    torch.testing.assert_close(plain["label"].as_tensor(), augmented["label"].as_tensor())
    assert not torch.allclose(plain["image"].as_tensor(), augmented["image"].as_tensor())


@pytest.mark.parametrize("name", ["affine", "rot90", "elastic"])
def test_spatial_augmentation_moves_image_and_label_together(tiny_dataset: Path, name: str) -> None:
    plain = _sample(tiny_dataset, AUG_OFF)
    moved = _sample(tiny_dataset, [*AUG_OFF, f"train.augment.{name}=1", "train.augment.rotate_deg=30"])
    assert not torch.equal(plain["label"].as_tensor(), moved["label"].as_tensor())
    assert set(moved["label"].unique().tolist()) <= {0, 1, 2, 3}  # nearest keeps labels integral
    # the label still sits on the bright structures it marks: the vessel is brighter than the organ
    image, label = moved["image"][0], moved["label"][0]
    if (label == 2).any() and (label == 1).any():
        assert image[label == 2].mean() > image[label == 1].mean()


@pytest.mark.parametrize("sampling", ["class_balanced", "posneg"])
def test_patches_are_centred_on_foreground_when_pos_fraction_is_one(tiny_dataset: Path, sampling: str) -> None:
    for seed in range(3):
        sample = _sample(tiny_dataset, [*AUG_OFF, "train.pos_fraction=1", f"train.sampling={sampling}"], seed)
        label = sample["label"][0]
        assert label[16, 16, 8] > 0  # the centre voxel of a 32x32x16 patch is foreground
        assert set(sample) == {"image", "label"}  # sampling indices are not passed on


def test_seed_everything_repeats_draws_and_leaves_cudnn_choices_free() -> None:
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    try:
        cudnn.deterministic, cudnn.benchmark = False, True
        draws = []
        for _ in range(2):
            seed_everything(123)
            draws.append((random.random(), float(np.random.rand()), float(torch.rand(1))))
        assert draws[0] == draws[1]
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)  # MONAI's set_determinism would flip both
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


@pytest.mark.parametrize("absent", [(), (3,), (2, 3)])
def test_foreground_centres_keep_pos_fraction_whichever_classes_a_case_holds(absent: tuple[int, ...]) -> None:
    """nnU-Net's rule: a foreground patch is centred on a class the case holds. MONAI renormalised the ratios
    over the present classes, so with two of three classes absent only ~0.43 of the centres were foreground."""
    from monai import transforms as mt
    from monai.data import MetaTensor

    from segkit.data.transforms import patch_drawing, sampling_preparation

    off = "{flip: 0, rot90: 0, affine: 0, elastic: 0, gamma: 0, noise: 0, contrast: 0, bias_field: 0}"
    cfg = load_config("demo_unet_resnet34.yaml", ["train.pos_fraction=0.67", "train.patch_size=[16,16,8]",
                                                  f"train.augment={off}"])
    label = np.zeros((1, 64, 64, 32), np.uint8)
    label[0, 16:48, 16:48, 8:24] = 1
    if 2 not in absent:
        label[0, 30:33, 30:33, 14:17] = 2
    if 3 not in absent:
        label[0, 40:42, 20:22, 10:12] = 3
    prepared = mt.Compose(sampling_preparation(cfg))({"image": MetaTensor(torch.zeros(label.shape)),
                                                      "label": MetaTensor(torch.as_tensor(label))})
    draw = mt.Compose(patch_drawing(cfg))
    draw.set_random_state(seed=0)
    centres = np.array([int(draw(dict(prepared))[0]["label"][0, 8, 8, 4]) for _ in range(600)])
    assert abs(np.mean(centres > 0) - 0.67) < 0.06  # binomial sd at n=600: 0.019
    present = [c for c in (1, 2, 3) if c not in absent]
    shares = [np.mean(centres == c) for c in present]
    assert max(shares) - min(shares) < 0.09  # the classes present share the foreground alike


@pytest.mark.parametrize(("spacing", "expected"), [("[1.2,1.2,2.5]", [0.25, 0.25, 0.25]),
                                                   ("[0.8,0.8,5.0]", [0.0, 0.0, 0.25]),
                                                   ("[4.0,1.0,1.0]", [0.25, 0.0, 0.0]),
                                                   ("null", [0.25, 0.25, 0.25])])
def test_thick_slice_data_is_rotated_in_plane_only(spacing: str, expected: list[float]) -> None:
    """nnU-Net's rule: beyond a 3:1 spacing ratio a rotation about an in-plane axis would shear the patch in mm."""
    from segkit.data.context import ContextSpatiald
    from segkit.data.transforms import patch_drawing

    cfg = load_config("unet_resnet34.yaml", [f"data.spacing={spacing}", "train.augment.rotate_deg=14.3239"])
    (context,) = [t for t in patch_drawing(cfg) if isinstance(t, ContextSpatiald)]
    assert [round(r, 4) for r in context.affine.rand_affine.rand_affine_grid.rotate_range] == expected  # radians
