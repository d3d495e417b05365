"""NIfTI-2 files as SimpleITK images: the image SimpleITK gives for the same data saved as NIfTI-1."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from segkit.io.nifti2 import is_nifti2, read_nifti2_as_sitk

AFFINES = {
    "ras": np.diag([0.8, 0.9, 2.5, 1.0]),
    "lps": np.diag([-0.7, -0.7, 3.0, 1.0]),
    "oblique": np.eye(4),
}
_c, _s = np.cos(0.3), np.sin(0.3)
AFFINES["oblique"][:3, :3] = np.array([[_c, -_s, 0], [_s, _c, 0], [0, 0, 1]]) @ np.array(
    [[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]]) @ np.diag([0.76, 0.81, 2.4])
AFFINES["oblique"][:3, 3] = [-120.0, 80.5, 33.0]


@pytest.mark.parametrize("orientation", list(AFFINES))
@pytest.mark.parametrize("shape", [(9, 7, 5), (9, 7, 5, 2)])
def test_nifti2_image_equals_simpleitks_nifti1_image(tmp_path: Path, orientation: str, shape: tuple) -> None:
    data = np.random.default_rng(0).integers(-1000, 1000, shape).astype(np.int16)
    affine = AFFINES[orientation]
    one, two = tmp_path / "one.nii.gz", tmp_path / "two.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(one))
    nib.save(nib.Nifti2Image(data, affine), str(two))
    assert is_nifti2(two) and not is_nifti2(one)
    expected, actual = sitk.ReadImage(str(one)), read_nifti2_as_sitk(two)
    assert actual.GetSize() == expected.GetSize()
    assert np.array_equal(sitk.GetArrayViewFromImage(actual), sitk.GetArrayViewFromImage(expected))
    for geometry in ("GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(actual, geometry)(), getattr(expected, geometry)(), atol=1e-5), geometry


def test_other_files_are_not_nifti2(tmp_path: Path) -> None:
    (tmp_path / "empty.nii").write_bytes(b"")
    (tmp_path / "text.nii.gz").write_bytes(b"not gzip")
    (tmp_path / "image.mha").write_bytes(b"\x1c\x02\x00\x00")  # 540, but not a NIfTI name
    assert not any(is_nifti2(tmp_path / name) for name in ("empty.nii", "text.nii.gz", "image.mha", "missing.nii"))
