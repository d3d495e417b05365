"""One source image file of ``segkit data convert``: its channels, grid and how to write them as NIfTI-1.

NIfTI files keep their header: qform/sform and their codes, units, the stored dtype and the scaling
(``scl_slope``/``scl_inter``), so a converted image holds exactly the stored values of the source. NIfTI-2
becomes NIfTI-1, because nnU-Net reads with SimpleITK, which does not read NIfTI-2. Every other format
(NRRD, MetaImage, PNG, TIFF) goes through SimpleITK, whose NIfTI writer turns its LPS
geometry into the RAS qform/sform. A 2D image becomes a NIfTI of shape (X, Y, 1) with a third spacing of
999 mm: nnU-Net's ``NaturalImage2DIO`` hands its planner 2D images as one slice 999 mm thick, so the planner
sees the same data and plans only its 2D configuration.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.arrayproxy import ArrayProxy

from segkit.errors import DataError
from segkit.io.atomic import atomic_path, full_suffix
from segkit.io.gzip_codec import gzip_compress_parts
from segkit.io.image_io import NIFTI_SUFFIXES, REEXPORT, header_shape, write_sitk_image
from segkit.io.nifti_reader import nifti_array, read_unscaled
from segkit.io.nifti_writer import nifti_header_bytes
from segkit.io.sitk_reader import ras_affine

PLANAR_DEPTH_MM = 999.0  # the slice thickness nnU-Net's NaturalImage2DIO gives 2D images
COMPRESSION_LEVEL = 1  # gzip level: nnU-Net reads any level; level 1 writes several times faster than 6


class NiftiSource:
    """A NIfTI file read with nibabel: stored values (unscaled) and header; a 4D image's last axis is channels."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.image = nib.load(str(path))
        proxy = self.image.dataobj
        gz = isinstance(proxy, ArrayProxy) and str(proxy.file_like).lower().endswith(".gz")
        self.stored = read_unscaled(Path(proxy.file_like), proxy) if gz else np.asanyarray(proxy.get_unscaled())
        if self.stored.ndim > 4:
            raise DataError(f"{path}: image has {self.stored.ndim} axes {self.stored.shape}; convert takes 2D, 3D or "
                            "4D images (channels on the 4th axis)")
        self.scaling = (float(proxy.slope), float(proxy.inter))

    @property
    def channels(self) -> int:
        """Channels: the 4th axis of a 4D image (MSD's multi-modal images), else 1."""
        return self.stored.shape[3] if self.stored.ndim == 4 else 1

    @property
    def shape(self) -> tuple[int, ...]:
        """The spatial shape (i, j, k)."""
        return tuple(self.stored.shape[:3])

    @property
    def affine(self) -> np.ndarray:
        """The voxel-to-RAS affine nibabel reads."""
        return np.asarray(self.image.affine, dtype=np.float64)

    def write_channel(self, channel: int, out: Path) -> None:
        """Channel ``channel``'s stored values, with the source's header and scaling, to ``out``."""
        array = self.stored[..., channel] if self.stored.ndim == 4 else self.stored
        _write_nifti(out, self.image, array, self.scaling)

    def label_values(self) -> np.ndarray:
        """The values (scaled, as nibabel reads them) of a one-channel image, in voxel order (i, j, k)."""
        values = nifti_array(self.image)
        return values[..., 0] if values.ndim == 4 else values

    def write_label(self, values: np.ndarray, out: Path) -> None:
        """``values`` (on this image's grid) to ``out`` with this image's header, unscaled."""
        _write_nifti(out, self.image, values, (1.0, 0.0))


def _write_nifti(out: Path, reference: nib.Nifti1Image, array: np.ndarray, scaling: tuple[float, float]) -> None:
    header = nib.Nifti1Header.from_header(reference.header)  # NIfTI-2 becomes NIfTI-1 (see the module docstring)
    header.set_data_dtype(array.dtype)
    header.set_data_shape(array.shape)
    image = nib.Nifti1Image(array, reference.affine, header)
    image.set_qform(reference.header.get_qform(), code=int(reference.header["qform_code"]))
    image.set_sform(reference.header.get_sform(), code=int(reference.header["sform_code"]))
    image.header["scl_slope"], image.header["scl_inter"] = scaling  # after the constructor, which resets them
    stored = np.asfortranarray(array, dtype=image.header.get_data_dtype())  # the header's byte order
    parts = [nifti_header_bytes(image), memoryview(stored.ravel(order="F")).cast("B")]
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        handle.write(gzip_compress_parts(parts, COMPRESSION_LEVEL))


class SitkSource:
    """An image file SimpleITK reads; several components per pixel are channels."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.image = sitk.ReadImage(str(path))
        if self.image.GetDimension() not in (2, 3):
            raise DataError(f"{path}: image is {self.image.GetDimension()}D; convert takes 2D and 3D images")
        self.spacing = _volume_tuple(self.image.GetSpacing(), PLANAR_DEPTH_MM)
        self.origin = _volume_tuple(self.image.GetOrigin(), 0.0)
        self.direction = _volume_direction(self.image)

    @property
    def channels(self) -> int:
        """Components per pixel (RGB: 3)."""
        return self.image.GetNumberOfComponentsPerPixel()

    @property
    def shape(self) -> tuple[int, ...]:
        """The spatial shape (i, j, k); a 2D image has k = 1."""
        return _volume_tuple(self.image.GetSize(), 1)

    @property
    def affine(self) -> np.ndarray:
        """The voxel-to-RAS affine of the NIfTI file this image becomes."""
        return ras_affine(self._placed(sitk.Image([1, 1, 1], sitk.sitkUInt8)))

    def _placed(self, volume: sitk.Image) -> sitk.Image:
        """``volume`` (3D) with this image's geometry."""
        volume.SetSpacing(self.spacing)
        volume.SetOrigin(self.origin)
        volume.SetDirection(self.direction)
        return volume

    def _channel(self, channel: int) -> sitk.Image:
        image = sitk.VectorIndexSelectionCast(self.image, channel) if self.channels > 1 else self.image
        return self._placed(_as_volume(image))

    def write_channel(self, channel: int, out: Path) -> None:
        """Component ``channel`` as a one-component NIfTI on this image's grid."""
        write_sitk_image(self._channel(channel), out, COMPRESSION_LEVEL)

    def label_values(self) -> np.ndarray:
        """The values of the first component in voxel order (i, j, k)."""
        return sitk.GetArrayFromImage(self._channel(0)).T

    def write_label(self, values: np.ndarray, out: Path) -> None:
        """``values`` (voxel order i, j, k) to ``out`` on this image's grid."""
        write_sitk_image(self._placed(sitk.GetImageFromArray(np.ascontiguousarray(values.T))), out, COMPRESSION_LEVEL)


def _volume_tuple(values: tuple, third: float) -> tuple:
    return tuple(values) if len(values) == 3 else (*values, third)


def _volume_direction(image: sitk.Image) -> tuple[float, ...]:
    if image.GetDimension() == 3:
        return image.GetDirection()
    direction = np.eye(3)
    direction[:2, :2] = np.asarray(image.GetDirection()).reshape(2, 2)
    return tuple(direction.ravel())


def _as_volume(image: sitk.Image) -> sitk.Image:
    """A 2D image as a 3D image of one slice; a 3D image unchanged."""
    return sitk.JoinSeries([image]) if image.GetDimension() == 2 else image


def read_source(path: Path) -> NiftiSource | SitkSource:
    """``path`` read for conversion (NIfTI with nibabel, anything else with SimpleITK); a DataError naming the file
    when it cannot be read."""
    header_shape(path)  # empty, truncated header, absurd size: refused before any pixel is read
    try:
        return NiftiSource(path) if full_suffix(path).lower() in NIFTI_SUFFIXES else SitkSource(path)
    except DataError:
        raise
    except Exception as exc:  # readers raise many types for broken files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].removeprefix("sitk::ERROR:").strip()
        raise DataError(f"{path}: cannot read image ({reason[:200]}) — {REEXPORT}") from None
