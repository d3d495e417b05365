"""Reading NRRD and MetaImage through SimpleITK gives the NIfTI path's arrays and geometry; NIfTI stays
with nibabel, which refuses truncated files that ITK would silently zero-fill."""

from __future__ import annotations

import gzip
import locale
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch

from segkit.config import DataCfg
from segkit.data.transforms import prediction_transforms
from segkit.io.sitk_reader import process_locale_kept


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


def _write_dicom_series(image: sitk.Image, folder: Path) -> None:
    """One DICOM file per slice with position, orientation and spacing tags (as scanners write them)."""
    folder.mkdir()
    direction = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6],
                                                  direction[1], direction[4], direction[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    with process_locale_kept():  # GDCM's DICOM writer switches the process locale to "C"
        _write_slices(image, folder, writer, orientation)


def _write_slices(image: sitk.Image, folder: Path, writer: sitk.ImageFileWriter, orientation: str) -> None:
    for z in range(image.GetDepth()):
        slice_image = image[:, :, z]
        position = image.TransformIndexToPhysicalPoint((0, 0, z))
        for tag, value in (("0020|000e", "1.2.826.0.1.3680043.2.1125.1"), ("0020|000d", "1.2.826.0.1.3680043.2.1125.2"),
                           ("0008|0060", "CT"), ("0020|0037", orientation),
                           ("0020|0032", "\\".join(f"{p:.6f}" for p in position)), ("0020|0013", str(z + 1)),
                           ("0028|0030", f"{image.GetSpacing()[1]:.6f}\\{image.GetSpacing()[0]:.6f}"),
                           ("0018|0050", f"{image.GetSpacing()[2]:.6f}")):
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(slice_image)


def test_dicom_series_folder_reads_like_the_volume(tiny_dataset: Path, tmp_path: Path) -> None:
    source = tiny_dataset / "imagesTr" / "phantom_001.nii.gz"  # RAS-flipped in-plane axes
    volume = sitk.ReadImage(str(source))
    _write_dicom_series(volume, tmp_path / "series")
    transforms = prediction_transforms(DataCfg())
    expected = transforms({"image": str(source)})["image"]
    encoding = locale.getpreferredencoding(False)
    got = transforms({"image": str(tmp_path / "series")})["image"]
    assert locale.getpreferredencoding(False) == encoding  # GDCM's locale change is undone
    torch.testing.assert_close(got.as_tensor(), expected.as_tensor())
    torch.testing.assert_close(got.affine, expected.affine, atol=1e-4, rtol=0)


def test_png_round_trips_through_reader_and_writer(tmp_path: Path) -> None:
    import numpy as np
    from monai.transforms import LoadImage

    from segkit.io.image_io import write_like
    from segkit.io.sitk_reader import SimpleITKReader

    array = (np.arange(5 * 7).reshape(5, 7) % 4).astype(np.uint8)  # 5 rows, 7 columns
    source = tmp_path / "label.png"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(source))
    loaded = LoadImage(reader=SimpleITKReader(), image_only=True)(str(source))
    assert tuple(loaded.shape) == (7, 5)  # (x, y) voxel order, as for volumes
    write_like(np.asarray(loaded).astype(np.uint8), source, tmp_path / "copy.png")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "copy.png"))), array)
