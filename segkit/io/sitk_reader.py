"""A MONAI ``ImageReader`` over SimpleITK: NRRD, MetaImage, DICOM series and 2D PNG/TIFF, geometry exact.

NIfTI stays with nibabel (see ``verify_suffix``); this reader adds the other formats. Arrays come back in voxel order
(i, j, k) like nibabel's, the affine is the RAS affine built from SimpleITK's spacing, origin and
direction (LPS), and multi-component pixels become a trailing channel axis, so the rest of the
MONAI chain (``EnsureChannelFirstd``, ``Orientationd``, ``Spacingd``) behaves exactly as with
``NibabelReader``. A directory is read as one DICOM series.
"""

from __future__ import annotations

import contextlib
import locale
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from monai.data import ImageReader
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from segkit.io.atomic import full_suffix

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".tif", ".tiff")


def ras_affine(image: sitk.Image) -> np.ndarray:
    """The voxel-to-world affine of a SimpleITK image: 4×4 RAS in 3D (of the first three axes for a 4D image, whose
    fourth axis is time or channels); 3×3 in the image's own frame in 2D."""
    dims = image.GetDimension()
    spatial = min(dims, 3)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dims, dims)[:spatial, :spatial]
    affine = np.eye(spatial + 1)
    affine[:spatial, :spatial] = direction @ np.diag(image.GetSpacing()[:spatial])
    affine[:spatial, spatial] = image.GetOrigin()[:spatial]
    return LPS_TO_RAS @ affine if spatial == 3 else affine


@contextlib.contextmanager
def process_locale_kept() -> Iterator[None]:
    """GDCM switches the process locale to "C", which turns Python's default text encoding into ASCII
    for every later ``open()`` and subprocess; put the locale back afterwards."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def read_dicom_series(folder: Path) -> sitk.Image:
    """The first DICOM series in ``folder``, slices sorted by SimpleITK's GDCM series reader."""
    with process_locale_kept():
        reader = sitk.ImageSeriesReader()
        series = reader.GetGDCMSeriesIDs(str(folder))
        if not series:
            raise ValueError(f"{folder}: no DICOM series found")
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series[0]))
        return reader.Execute()


class SimpleITKReader(ImageReader):
    """Read 3D images (and DICOM folders) with SimpleITK for MONAI's ``LoadImage``."""

    def verify_suffix(self, filename: Sequence[str] | str) -> bool:
        """NRRD and MetaImage files, or a directory holding a DICOM series.

        NIfTI is left to nibabel: ITK 5 silently zero-fills truncated NIfTI files and reads NaN as 0,
        where nibabel fails loudly and keeps NaN for the checks to see.
        """
        names = ensure_tuple(filename)
        return all(Path(n).is_dir() or full_suffix(Path(n)).lower() in SITK_SUFFIXES for n in names)

    def read(self, data: Sequence[str] | str, **kwargs) -> list[sitk.Image] | sitk.Image:
        """SimpleITK images for one file/folder or a list of them (one per channel)."""
        names = [str(n) for n in ensure_tuple(data)]
        if not self.verify_suffix(names):  # MONAI then falls back to the next reader (nibabel for NIfTI)
            raise ValueError(f"SimpleITKReader does not read {names[0]}")
        self.filenames = names
        images = [read_dicom_series(Path(n)) if Path(n).is_dir() else sitk.ReadImage(n) for n in names]
        return images if len(images) > 1 else images[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        """Arrays in (i, j, k[, channel]) order and MONAI metadata; several images stack as channels. The fourth
        axis of a 4D image is a channel axis, as MONAI's ``NibabelReader`` reads a 4D NIfTI."""
        arrays, meta = [], {}
        for image in img if isinstance(img, list) else [img]:  # an sitk.Image is itself iterable
            array = sitk.GetArrayViewFromImage(image)
            components = image.GetNumberOfComponentsPerPixel()
            spatial_axes = array.ndim - (1 if components > 1 else 0)
            order = list(reversed(range(spatial_axes))) + ([spatial_axes] if components > 1 else [])
            array = np.ascontiguousarray(np.transpose(array, order))
            channels = components > 1 or spatial_axes > 3
            if components > 1 and spatial_axes > 3:  # (i, j, k, t, c): time points and components in one axis
                array = array.reshape(*array.shape[:3], -1)
            affine = ras_affine(image)
            header = {
                MetaKeys.AFFINE: affine, MetaKeys.ORIGINAL_AFFINE: affine.copy(),
                MetaKeys.SPATIAL_SHAPE: np.asarray(image.GetSize()[:3]), MetaKeys.SPACE: SpaceKeys.RAS,
                MetaKeys.ORIGINAL_CHANNEL_DIM: -1 if channels else float("nan"),
                "spacing": np.asarray(image.GetSpacing()[:3]),
            }
            arrays.append(array)
            _copy_compatible_dict(header, meta)
        return _stack_images(arrays, meta), meta
