"""Spatial augmentation on a crop with context: the patch samples the image, never smeared patch edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai import transforms as mt
from monai.data import MetaTensor

from segkit.config import load_config
from segkit.data.context import SPATIAL_KEY, ContextCropd, ContextSpatiald, context_margin, rotated_extent
from segkit.data.transforms import patch_drawing, sampling_preparation


def test_the_rotated_extent_bounds_a_square_turned_by_45_degrees() -> None:
    np.testing.assert_allclose(rotated_extent([10, 10], np.pi / 4, [0]), [10 * np.sqrt(2)] * 2, rtol=1e-9)
    np.testing.assert_allclose(rotated_extent([64, 32, 16], 0.0, [0, 1, 2]), [64, 32, 16])
    # about the last axis only: that axis keeps its size, the plane grows
    extent = rotated_extent([64, 64, 16], np.radians(15), [2])
    assert extent[2] == 16 and extent[0] == pytest.approx(64 * (np.cos(np.radians(15)) + np.sin(np.radians(15))))
    assert context_margin([64, 64, 16], True, 15, 0.0, [2], elastic=False) == (8, 8, 0)  # ceil(14.4 / 2)


def test_without_rotation_or_scaling_the_patch_is_the_centre_of_the_crop() -> None:
    crop = torch.arange(1 * 20 * 16 * 12, dtype=torch.float32).reshape(1, 20, 16, 12)
    affine = mt.RandAffined(["image", "label"], spatial_size=[12, 8, 6], prob=1.0, rotate_range=[0.0] * 3,
                            scale_range=[0.0] * 3, mode=["bilinear", "nearest"], padding_mode="border")
    transform = ContextSpatiald(["image", "label"], [12, 8, 6], affine, None).set_random_state(seed=0)
    out = transform({"image": MetaTensor(crop), "label": MetaTensor(crop.clone()), SPATIAL_KEY: (True, False)})
    centre = crop[:, 4:16, 4:12, 3:9]
    torch.testing.assert_close(out["image"].as_tensor(), centre, rtol=0, atol=1e-3)
    torch.testing.assert_close(out["label"].as_tensor(), centre)
    assert SPATIAL_KEY not in out
    plain = transform({"image": MetaTensor(centre), "label": MetaTensor(centre), SPATIAL_KEY: (False, False)})
    assert torch.equal(plain["image"].as_tensor(), centre) and plain["label"].dtype == torch.float32


def test_the_crop_with_context_is_centred_where_monai_centres_the_patch_and_zero_outside() -> None:
    image = torch.arange(1 * 20 * 16 * 12, dtype=torch.float32).reshape(1, 20, 16, 12)
    label = torch.zeros(1, 20, 16, 12, dtype=torch.uint8)
    label[0, 1, 2, 3] = 1  # near the corner: the patch is shifted inside, the context reaches beyond the volume
    data = mt.ClassesToIndicesd("label", num_classes=2)({"image": MetaTensor(image), "label": MetaTensor(label)})
    patch_crop = mt.RandCropByLabelClassesd(["image", "label"], "label", [6, 6, 4], ratios=[0, 1], num_classes=2,
                                            indices_key="label_cls_indices")
    plain = patch_crop.set_random_state(seed=3)(dict(data))[0]
    context = ContextCropd(["image", "label"], patch_crop, "label", ["label_cls_indices"], [2, 3, 1], 1.0, 0.0)
    context.crop.set_random_state(seed=3)  # the same centre as the plain crop drew
    cut = context(dict(data))[0]
    assert cut["image"].shape == (1, 10, 12, 6) and cut[SPATIAL_KEY] == (True, False)
    torch.testing.assert_close(cut["image"][:, 2:8, 3:9, 1:5].as_tensor(), plain["image"].as_tensor())
    assert float(cut["image"][0, 0, 0, 0]) == 0.0  # beyond the volume: zeros
    unrotated = ContextCropd(["image", "label"], patch_crop, "label", ["label_cls_indices"], [2, 3, 1], 0.0, 0.0)
    unrotated.crop.set_random_state(seed=3)
    torch.testing.assert_close(unrotated(dict(data))[0]["image"].as_tensor(), plain["image"].as_tensor())  # no room


def test_rotated_and_scaled_patches_of_a_ramp_stay_linear() -> None:
    """An affine map of a linear ramp is linear; voxels copied from a patch's edge (what border padding of the
    patch itself gave, ~15 % of them at ±15° and ±15 %) break that. Interior centres: the context is image."""
    cfg = load_config("unet_resnet34.yaml", ["train.patch_size=[24,24,12]", "train.pos_fraction=1",
                                             "train.augment={flip: 0, affine: 1, gamma: 0, noise: 0, contrast: 0}"])
    x, y, z = torch.meshgrid(torch.arange(128.0), torch.arange(112.0), torch.arange(64.0), indexing="ij")
    label = torch.zeros(1, 128, 112, 64, dtype=torch.uint8)
    label[0, 60:68, 52:60, 28:36] = 1  # centres here: context of ±~20 voxels stays inside the volume
    prepared = mt.Compose(sampling_preparation(cfg))({"image": MetaTensor((x + 2 * y + 3 * z)[None]),
                                                      "label": MetaTensor(label)})
    draw = mt.Compose(patch_drawing(cfg))
    draw.set_random_state(seed=1)
    grid = np.stack([g.ravel() for g in np.meshgrid(*[np.arange(s) for s in (24, 24, 12)], indexing="ij")] +
                    [np.ones(24 * 24 * 12)], axis=1)
    for _ in range(6):
        patch = draw(dict(prepared))[0]
        assert patch["image"].shape == (1, 24, 24, 12) and patch["label"].shape == (1, 24, 24, 12)
        values = patch["image"].as_tensor().numpy().ravel()
        fit, *_ = np.linalg.lstsq(grid, values, rcond=None)
        assert np.abs(grid @ fit - values).max() < 1e-2 * np.ptp(values)
