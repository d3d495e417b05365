"""Reading image headers and writing images with exact geometry (SimpleITK / nibabel)."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from segkit.errors import DataError
from segkit.io.atomic import IMAGE_SUFFIXES, atomic_path, full_suffix
from segkit.io.gzip_codec import gzip_compress_parts
from segkit.io.nifti_reader import nifti_array
from segkit.io.nifti_writer import nifti_parts
from segkit.io.sitk_reader import ras_affine
from segkit.limits import MAX_AXIS, MAX_VOXELS  # a header declaring more is taken as corrupt: nothing is allocated

NIFTI_SUFFIXES = (".nii", ".nii.gz")
REEXPORT = "copy or export the file again"


def _reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__).removeprefix("sitk::ERROR:").strip()[:200]


def _declared_shape(path: Path) -> tuple[int, ...]:
    """The array shape in the header (voxel order i, j, k, then channels/components); reads no pixels."""
    if full_suffix(path).lower() in NIFTI_SUFFIXES:
        image = nib.load(str(path))
        fields = image.header.get_data_dtype().names
        if fields:  # RGB24 / RGBA32: one record of colour components per voxel
            raise DataError(f"{path}: image voxels are colour values ({', '.join(fields)}) — segkit reads one grey "
                            "value per voxel; convert the image to grey, or save each colour as a channel file")
        return tuple(int(s) for s in image.shape)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    components = reader.GetNumberOfComponents()
    return (*reader.GetSize(), *((components,) if components > 1 else ()))


def uncompressed_nifti_named_gz(path: Path) -> bool:
    """Whether a file named ``.nii.gz`` holds an uncompressed NIfTI (renamed by hand: SimpleITK reads it anyway,
    nibabel and segkit's reader do not)."""
    if not path.name.lower().endswith(".nii.gz") or not path.is_file():
        return False
    with path.open("rb") as handle:
        start = handle.read(4)
    return len(start) == 4 and any(int.from_bytes(start, order) in (348, 540) for order in ("little", "big"))


def gzipped_nifti_named_nii(path: Path) -> bool:
    """Whether a file named ``.nii`` is gzip-compressed (a ``.nii.gz`` renamed by hand: nibabel, and so segkit,
    choose by the name and cannot read it)."""
    if not path.name.lower().endswith(".nii") or not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def header_shape(path: Path) -> tuple[int, ...]:
    """The array shape ``path``'s header declares, read without any pixel data.

    Refuses (DataError) an empty file, a header no reader understands, and a size beyond
    ``MAX_VOXELS`` voxels or ``MAX_AXIS`` per axis (a corrupt header), before anything is allocated.
    """
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes) — {REEXPORT}")
    if uncompressed_nifti_named_gz(Path(path)):
        raise DataError(f"{path}: an uncompressed NIfTI named .nii.gz — rename it to .nii, or compress it with gzip")
    if gzipped_nifti_named_nii(Path(path)):
        raise DataError(f"{path}: a gzip-compressed NIfTI named .nii — rename it to .nii.gz, or decompress it with "
                        "gunzip")
    try:
        shape = _declared_shape(path)
    except DataError:
        raise
    except Exception as exc:  # readers raise many types for broken headers
        raise DataError(f"{path}: not a readable image ({_reason(exc)}) — check that it is an image segkit reads "
                        f"({', '.join(IMAGE_SUFFIXES)}), or {REEXPORT}") from None
    if math.prod(shape) > MAX_VOXELS or max(shape, default=0) > MAX_AXIS:
        size = "×".join(map(str, shape))
        raise DataError(f"{path}: header declares size {size} ({math.prod(shape):.3g} voxels), over the limit of "
                        f"2**31 voxels or {MAX_AXIS} per axis — the header is corrupt; {REEXPORT}")
    return shape


def header_components(path: Path) -> int | None:
    """The components per pixel ``path``'s header declares (RGB: 3), read by SimpleITK without the pixel data;
    None when SimpleITK cannot read the header (the pixel read reports why)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader.GetNumberOfComponents()


def write_sitk_image(image: sitk.Image, path: Path, compression_level: int = 1) -> None:
    """Write a SimpleITK image atomically (gzip level ``compression_level`` where compressed)."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), True, compression_level)


def write_like(array_ijk: np.ndarray, reference: Path, path: Path, compression_level: int = 1) -> None:
    """Write ``array_ijk`` (voxel order i, j, k as nibabel reads) on ``reference``'s exact grid.

    NIfTI outputs copy the reference header (affine, qform/sform codes, units);
    other formats copy SimpleITK's spacing, origin and direction. Compressed formats use gzip
    level ``compression_level``.
    """
    if full_suffix(reference).lower() in NIFTI_SUFFIXES and full_suffix(path).lower() in NIFTI_SUFFIXES:
        _write_nifti_like(array_ijk, reference, path, compression_level)
        return
    info = sitk.ImageFileReader()
    info.SetFileName(str(reference))
    info.ReadImageInformation()
    array_ijk = on_reference_shape(array_ijk, tuple(info.GetSize()))
    dims = array_ijk.ndim  # the reference's, or fewer where its extra axes are channels (a 4D multi-channel image)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_ijk.T), isVector=False)
    image.SetSpacing(info.GetSpacing()[:dims])
    image.SetOrigin(info.GetOrigin()[:dims])
    image.SetDirection(np.asarray(info.GetDirection()).reshape(info.GetDimension(), -1)[:dims, :dims].ravel().tolist())
    write_sitk_image(image, path, compression_level)


def on_reference_shape(array_ijk: np.ndarray, reference_shape: tuple[int, ...]) -> np.ndarray:
    """``array_ijk`` with the trailing axes of length 1 that the reference has beyond it (an (X, Y, Z, 1) image
    gets an (X, Y, Z, 1) label map: the input's exact shape); otherwise unchanged. A view: no copy."""
    extra = len(reference_shape) - array_ijk.ndim
    if extra > 0 and tuple(reference_shape) == (*array_ijk.shape, *(1,) * extra):
        return array_ijk.reshape(reference_shape)
    return array_ijk


def nifti_like(array_ijk: np.ndarray, reference: Path, path: Path) -> nib.Nifti1Image:
    """``array_ijk`` as a NIfTI image of ``reference``'s version (1 or 2) with its header and geometry (qform/sform
    and their codes), unscaled; ``path`` (the output) only names the file in the error for a shape that does not
    match."""
    ref = nib.load(str(reference))
    array_ijk = on_reference_shape(array_ijk, tuple(ref.shape))
    if tuple(ref.shape[: array_ijk.ndim]) != array_ijk.shape:
        raise DataError(f"{path.name}: array shape {array_ijk.shape} does not match {reference} {ref.shape}")
    header = ref.header.copy()
    header.set_data_dtype(array_ijk.dtype)
    header.set_data_shape(array_ijk.shape)
    image_class = nib.Nifti2Image if isinstance(ref, nib.Nifti2Image) else nib.Nifti1Image
    image = image_class(array_ijk, ref.affine, header)
    image.header["scl_slope"], image.header["scl_inter"] = 1.0, 0.0  # labels unscaled (the image resets them)
    image.set_qform(ref.header.get_qform(), code=int(ref.header["qform_code"]))
    image.set_sform(ref.header.get_sform(), code=int(ref.header["sform_code"]))
    return image


def _write_nifti_like(array_ijk: np.ndarray, reference: Path, path: Path, compression_level: int) -> None:
    image = nifti_like(array_ijk, reference, path)
    parts = nifti_parts(image, on_reference_shape(array_ijk, image.shape))  # F-ordered (as predicted): no copy
    if path.name.lower().endswith(".gz"):
        parts = [gzip_compress_parts(parts, compression_level)]
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        for part in parts:
            handle.write(part)


def write_probabilities(path: Path, probabilities: np.ndarray, affine: np.ndarray) -> None:
    """Class probabilities ``(K, i, j, k)`` (float16) and the voxel-to-RAS affine as a compressed ``.npz``
    (read back with ``numpy.load(path, allow_pickle=False)``)."""
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez_compressed(handle, probabilities=probabilities, affine=np.asarray(affine, dtype=np.float64))


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has a supported image suffix."""
    return full_suffix(path).lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_image_array(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first channel of an image in voxel order (i, j, k) as float32, and its RAS affine."""
    header_shape(path)
    try:
        if full_suffix(path).lower() in NIFTI_SUFFIXES:
            image = nib.load(str(path))
            array, affine = nifti_array(image).astype(np.float32), np.asarray(image.affine, dtype=np.float64)
        else:
            image = sitk.ReadImage(str(path))
            array = sitk.GetArrayViewFromImage(image)
            array = array[..., 0] if image.GetNumberOfComponentsPerPixel() > 1 else array  # e.g. RGB: the first
            array, affine = array.T.astype(np.float32), ras_affine(image)
    except Exception as exc:  # readers raise many types for broken files
        raise DataError(f"{path}: cannot read image ({_reason(exc)}) — {REEXPORT}") from None
    while array.ndim > 3:
        array = array[..., 0]
    return array, affine


def read_label_array(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An integer label map in voxel order (i, j, k) and its RAS affine."""
    header_shape(path)
    try:
        if full_suffix(path).lower() in NIFTI_SUFFIXES:
            image = nib.load(str(path))
            array, affine = nifti_array(image), np.asarray(image.affine, dtype=np.float64)
        else:
            image = sitk.ReadImage(str(path))
            array = sitk.GetArrayFromImage(image).T
            affine = ras_affine(image)
    except Exception as exc:  # readers raise many types for broken files
        raise DataError(f"{path}: cannot read image ({_reason(exc)}) — {REEXPORT}") from None
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise DataError(f"{path}: label map holds non-integer values; labels must be whole numbers")
        array = rounded.astype(np.int64)
    return array, affine
