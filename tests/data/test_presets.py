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
from segkit.data.transforms import prediction_transforms
from segkit.errors import ConfigError


def test_auto_spacing_and_ct_stats_come_from_the_fingerprint(tiny_dataset: Path) -> None:
    _, fingerprint = check_dataset(tiny_dataset, "msd")
    resolved = resolve_from_fingerprint(DataCfg(root=tiny_dataset, spacing="auto", normalize="ct"), fingerprint)
    spacings = [sitk.ReadImage(str(p)).GetSpacing() for p in sorted((tiny_dataset / "imagesTr").glob("*.nii.gz"))]
    spacings += [sitk.ReadImage(str(p)).GetSpacing() for p in (tiny_dataset / "imagesTs").glob("*.nii.gz")]
    np.testing.assert_allclose(resolved.spacing, np.median(spacings, axis=0), atol=1e-4)
    low, high, mean, std = resolved.ct_stats
    assert low < mean < high and std > 0


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
