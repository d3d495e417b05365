"""Reading NRRD and MetaImage through SimpleITK gives the NIfTI path's arrays and geometry; NIfTI stays
with nibabel, which refuses truncated files that ITK would silently zero-fill."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch

from segkit.config import DataCfg
from segkit.data.transforms import prediction_transforms


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_other_formats_preprocess_like_nifti(tiny_dataset: Path, tmp_path: Path, suffix: str) -> None:
    source = tiny_dataset / "imagesTr" / "phantom_002.nii.gz"  # the oblique case
    other = tmp_path / f"case{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(source)), str(other), True)
    transforms = prediction_transforms(DataCfg(spacing=(1.0, 1.0, 2.0)))
    expected, got = transforms({"image": str(source)})["image"], transforms({"image": str(other)})["image"]
    torch.testing.assert_close(got.as_tensor(), expected.as_tensor())
    torch.testing.assert_close(got.affine, expected.affine, atol=1e-5, rtol=0)


def test_truncated_nifti_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    raw = gzip.decompress((tiny_dataset / "imagesTr" / "phantom_000.nii.gz").read_bytes())
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(RuntimeError):
        prediction_transforms(DataCfg())({"image": str(truncated)})
