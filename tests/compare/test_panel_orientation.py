"""The compare report's qualitative panel shows the axial slice as `segkit predict --preview` does, whatever voxel
order the held-out file stores."""

from __future__ import annotations

import numpy as np

from segkit.compare.panel_data import _axial_slices


def test_the_qualitative_slice_is_axial_for_a_z_first_file_as_for_an_las_one() -> None:
    rng = np.random.default_rng(0)
    las = rng.normal(size=(12, 10, 8))  # stored in the display order itself (LAS+)
    las_affine = np.diag([-0.8, 0.9, 2.5, 1.0])
    centre = (5.0, 4.0, 3.0)
    (expected,), where = _axial_slices([las], las_affine, centre)
    np.testing.assert_array_equal(expected, las[:, :, 3])
    assert where.startswith("axial slice 3 along the file's axis 2")
    z_first = las.transpose(2, 1, 0)[:, ::-1]  # (z, y, x) with y stored posterior → anterior reversed
    affine = las_affine[:, [2, 1, 0, 3]] @ np.diag([1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = las_affine[:3, :3] @ [0.0, 9.0, 0.0]  # the same world positions as the LAS voxels
    (got,), where = _axial_slices([z_first], affine, (3.0, 9 - 4.0, 5.0))
    np.testing.assert_array_equal(got, expected)  # before: z_first[:, :, 5], a sagittal slice
    assert where.startswith("axial slice 3 along the file's axis 0")
