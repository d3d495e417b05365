"""Fingerprint-derived settings: spacing 'auto' and the CT normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from segkit.pipelines.data_check import check_dataset

from segkit.config import DataCfg
from segkit.data.presets import resolve_from_fingerprint
from segkit.data.synth import write_dataset
from segkit.data.transforms import prediction_transforms
from segkit.errors import ConfigError


def _read(folder: Path) -> list[tuple[sitk.Image, np.ndarray]]:
    """Each image of ``folder`` and its foreground intensities (from the label of the same name)."""
    pairs = []
    for path in sorted(folder.glob("*.nii.gz")):
        image = sitk.ReadImage(str(path))
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(folder.parent / folder.name.replace("images", "labels")
                                                          / path.name)))
        pairs.append((image, sitk.GetArrayFromImage(image)[label > 0].astype(np.float64)))
    return pairs


def test_auto_spacing_and_ct_stats_come_from_the_training_cases_only(tiny_dataset: Path) -> None:
    """As in nnU-Net: the held-out test case (imagesTs) shapes neither the target spacing nor the CT statistics."""
    training, test = _read(tiny_dataset / "imagesTr"), _read(tiny_dataset / "imagesTs")
    spacing = np.median([image.GetSpacing() for image, _ in training], axis=0)
    with_test = np.median([image.GetSpacing() for image, _ in training + test], axis=0)
    assert np.abs(spacing - with_test).max() > 0.01  # so the test case would move the result
    _, fingerprint = check_dataset(tiny_dataset, "msd")
    resolved = resolve_from_fingerprint(DataCfg(root=tiny_dataset, spacing="auto", normalize="ct"), fingerprint)
    np.testing.assert_allclose(resolved.spacing, spacing, atol=1e-4)
    foreground = np.concatenate([values for _, values in training])  # under the sample cap: every voxel counts
    low, high = np.percentile(foreground, [0.5, 99.5])
    assert resolved.ct_stats == pytest.approx((low, high, foreground.mean(), foreground.std()))


def test_2d_images_keep_their_spacing_and_get_ct_stats(tmp_path: Path) -> None:
    write_dataset(tmp_path / "png", cases=3, seed=3, size_dhw=(8, 32, 32), test_cases=1, layout="folder", dims=2)
    _, fingerprint = check_dataset(tmp_path / "png", "folder")
    resolved = resolve_from_fingerprint(DataCfg(root=tmp_path, spacing="auto", normalize="ct", image_dims=2),
                                        fingerprint)
    assert resolved.spacing == "auto" and fingerprint.spacing_median == [1.0, 1.0]
    assert resolved.ct_stats[0] < resolved.ct_stats[2] < resolved.ct_stats[1] and resolved.ct_stats[3] > 0


def test_ct_normalisation_clips_and_standardises(tiny_dataset: Path) -> None:
    path = next((tiny_dataset / "imagesTr").glob("*.nii.gz"))
    image = prediction_transforms(DataCfg(normalize="ct", ct_stats=(-50.0, 250.0, 100.0, 50.0)))(
        {"image": str(path)})["image"]
    raw = torch.as_tensor(sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32))
    expected = ((raw.clamp(-50.0, 250.0) - 100.0) / 50.0).flatten().sort().values
    # reorientation only permutes voxels, so the sorted values must agree
    torch.testing.assert_close(image.as_tensor().flatten().sort().values, expected)
    assert float(image.min()) == pytest.approx(-3.0) and float(image.max()) == pytest.approx(3.0)


def test_ct_without_stats_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data\.ct_stats"):
        prediction_transforms(DataCfg(normalize="ct"))


def test_ct_stats_are_derived_and_applied_per_channel(tmp_path: Path) -> None:
    """nnU-Net normalises each channel with its own statistics: the second channel's intensities differ, and
    channel 0's range would clip it to a constant."""
    root = tmp_path / "two"
    write_dataset(root, cases=4, seed=2, size_dhw=(8, 24, 24), test_cases=1, layout="nnunet", channels=2)
    _, fingerprint = check_dataset(root, "nnunet")
    resolved = resolve_from_fingerprint(DataCfg(root=root, spacing=None, normalize="ct"), fingerprint)
    assert len(resolved.ct_stats) == 2 and resolved.ct_stats[0] != resolved.ct_stats[1]
    channels = sorted((root / "imagesTr").glob("*_000[01].nii.gz"))[:2]
    image = prediction_transforms(resolved)({"image": [str(p) for p in channels]})["image"]
    for channel, (path, (low, high, mean, std)) in enumerate(zip(channels, resolved.ct_stats, strict=True)):
        raw = torch.as_tensor(sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32))
        expected = ((raw.clamp(low, high) - mean) / std).flatten().sort().values
        torch.testing.assert_close(image[channel].as_tensor().flatten().sort().values, expected)
        assert float(image[channel].std()) > 0.5  # not clipped flat by another channel's range


def test_per_channel_ct_stats_must_list_every_channel() -> None:
    from segkit.config import load_config

    two = "data.ct_stats=[[0, 100, 50, 10], [200, 400, 300, 20]]"
    assert load_config("demo_unet_resnet34", [two, "model.in_channels=2"]).data.ct_stats[1] == (200, 400, 300, 20)
    with pytest.raises(ConfigError, match=r"data.ct_stats lists 2 channels but model.in_channels is 1"):
        load_config("demo_unet_resnet34", [two])
    with pytest.raises(ConfigError, match=r"lower < upper"):
        load_config("demo_unet_resnet34", ["data.ct_stats=[[0, 100, 50, 10], [400, 200, 300, 20]]",
                                           "model.in_channels=2"])
