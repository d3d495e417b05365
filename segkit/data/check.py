"""Dataset integrity check: every problem of every case, each image and label read once.

For each file the header is read first (no pixel buffer), so a corrupt header that declares an
enormous volume is refused before anything is allocated; then SimpleITK reads the pixels once and
every check, plus the statistics the fingerprint needs, works on that one read. NIfTI files are also
streamed through once in small chunks, because ITK 5 silently zero-fills truncated data and turns
NaN/Inf into 0. Results can be cached per case, keyed by each file's path, size and modification
time, so an unchanged dataset is not read again.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import SimpleITK as sitk

from segkit.data.check_results import (
    CaseReport,
    CheckResult,
    Problem,
    cache_entry,
    cached_report,
    case_signature,
    load_cache,
    save_cache,
)
from segkit.data.fingerprint import CaseStats, sample_foreground
from segkit.data.msd import Case
from segkit.data.nifti_geometry import qform_sform_conflict
from segkit.errors import DataError
from segkit.io.atomic import full_suffix
from segkit.io.image_io import MAX_AXIS, MAX_VOXELS, header_shape, uncompressed_nifti_named_gz
from segkit.io.nifti2 import is_nifti2, read_nifti2_as_sitk

SPACING_RTOL = 1e-3
ORIGIN_ATOL_MM = 1e-3
DIRECTION_ATOL = 1e-4
_CHUNK = 1 << 20
_REEXPORT = "copy or export the file again"
# NIfTI datatype codes of float pixels (complex ones as pairs of floats)
_NIFTI_FLOATS = {16: np.dtype("f4"), 32: np.dtype("f4"), 64: np.dtype("f8"), 1792: np.dtype("f8")}
_NONFINITE_FIX = {"image": "replace them (e.g. with the lowest valid intensity) and save the image again",
                  "label": "set them to a class value and save the label as integers"}

def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def _size_text(size) -> str:
    return "×".join(str(s) for s in size)


def _values_text(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(f"{float(v):g}" for v in values[:limit])
    return shown if values.size <= limit else f"{shown}, … ({values.size} values)"


def _itk_reason(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__).removeprefix("sitk::ERROR:").strip()[:200]


@dataclass(frozen=True)
class _Payload:
    """What a streaming pass over a NIfTI file's pixel bytes found."""

    expected: int  # pixel bytes the header declares
    found: int  # pixel bytes present after the header
    nan: int
    inf: int


def _count_payload(stream: BinaryIO, dtype: np.dtype | None) -> tuple[int, int, int]:
    """Bytes left in ``stream`` and, for a float ``dtype``, how many NaN and infinite values they hold."""
    found = nan = inf = 0
    rest = b""
    while chunk := stream.read(_CHUNK):
        found += len(chunk)
        if dtype is None:
            continue
        data = rest + chunk
        usable = len(data) - len(data) % dtype.itemsize
        values = np.frombuffer(data, dtype, count=usable // dtype.itemsize)
        nan, inf = nan + int(np.isnan(values).sum()), inf + int(np.isinf(values).sum())
        rest = data[usable:]
    return found, nan, inf


def _scan_nifti(path: Path, reader: sitk.ImageFileReader) -> _Payload | None:
    """Stream a NIfTI file's pixel bytes (None for other formats), with bounded memory.

    ITK 5 fills the missing voxels of a truncated NIfTI with zeros and replaces NaN/Inf by 0 on
    reading, both silently; this pass over the raw bytes is the only way to see either.
    Raises EOFError, OSError or zlib.error for damaged gzip data.
    """
    suffix = full_suffix(path).lower()
    if suffix not in (".nii", ".nii.gz") or not reader.HasMetaDataKey("vox_offset"):
        return None
    meta = reader.GetMetaData
    voxels = math.prod(int(meta(f"dim[{i}]")) for i in range(1, int(meta("dim[0]")) + 1))
    offset, expected = int(float(meta("vox_offset"))), voxels * int(meta("bitpix")) // 8
    dtype = _NIFTI_FLOATS.get(int(meta("datatype")))
    if suffix == ".nii" and dtype is None:
        return _Payload(expected, path.stat().st_size - offset, 0, 0)
    with (gzip.open if suffix == ".nii.gz" else open)(path, "rb") as stream:
        header = stream.read(offset)
        order = "<" if int.from_bytes(header[:4], "little") == 348 else ">"  # sizeof_hdr tells the byte order
        return _Payload(expected, *_count_payload(stream, dtype.newbyteorder(order) if dtype else None))


def _grid(image: sitk.Image) -> tuple[tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]:
    """Size, spacing, origin and direction of the first three (spatial) axes."""
    n = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(n, n)[:3, :3]
    return (tuple(image.GetSize()[:3]), np.asarray(image.GetSpacing()[:3]), np.asarray(image.GetOrigin()[:3]),
            direction)


def _value_counts(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their voxel counts (bincount for small non-negative integers: no sort)."""
    if array.dtype.kind in "ui" and np.can_cast(array.dtype, np.intp) and array.size:
        low, high = int(array.min()), int(array.max())
        if low >= 0 and high < 2**16:
            counts = np.bincount(array.ravel(), minlength=high + 1)
            values = np.flatnonzero(counts)
            return values, counts[values]
    return np.unique(array, return_counts=True)


def _not_3d_message(dim: int, size: tuple[int, ...], components: int) -> str:
    what = f"image is {dim}D (size {_size_text(size)}" + (f", {components} components)" if components > 1 else ")")
    if dim < 3:
        return (f"{what} — this check is for 3D volumes: stack the slices into one 3D file, or train on 2D images "
                "with data.image_dims: 2 (training then reads them without this check)")
    if dim == 4 and components == 1:
        return (f"{what} and dataset.json declares no channels — list one 'modality' per entry of the 4th axis, "
                "or save a 3D volume")
    return f"{what} — save a 3D volume, with the channels (if several) as the 4th axis"


class _CaseCheck:
    """The checks of one case; collects every problem instead of stopping at the first."""

    def __init__(self, case: Case, num_classes: int | None, channels: int | None, label_optional: bool) -> None:
        self.case, self.num_classes, self.channels = case, num_classes, channels
        self.label_optional = label_optional
        self.problems: list[Problem] = []
        self._scanned_nonfinite: dict[Path, tuple[int, int]] = {}  # NaN/Inf counts from the raw NIfTI bytes

    def _error(self, file: Path, message: str) -> None:
        self.problems.append(Problem(self.case.case_id, file, "error", message))

    def run(self) -> CaseReport:
        image = self._read(self.case.image, "image")
        image_cf = self._image_channels_first(image) if image is not None else None
        if image_cf is not None:
            self._check_finite(self.case.image, "image", image_cf)
        label_path = self._label_path()
        label = self._read(label_path, "label") if label_path is not None else None
        label_array = self._label_array(label_path, label) if label is not None else None
        counts = None
        if label_array is not None:
            finite = self._check_finite(label_path, "label", label_array)
            counts = self._check_label_values(label_path, label_array, finite)
        if image_cf is not None and label_array is not None:
            self._compare_grids(label_path, image, label)
        if image_cf is None or any(p.severity == "error" for p in self.problems):
            return CaseReport(self.problems, None)
        return CaseReport(self.problems, self._stats(image, image_cf, label_array, counts or {}))

    def _label_path(self) -> Path | None:
        label = self.case.label
        if label is None:
            if not self.label_optional:
                self._error(self.case.image, "no label file is listed for this image — add its label map and list "
                                             "it in dataset.json")
            return None
        if not label.is_file():
            self._error(label, "label file does not exist — add it or fix its path in dataset.json")
            return None
        return label

    def _read(self, path: Path, role: str) -> sitk.Image | None:
        """Header checks, then the one pixel read of this file."""
        nifti2 = is_nifti2(path)  # SimpleITK reads only NIfTI-1: these go through nibabel
        if not self._header_ok(path, role, nifti2):
            return None
        if nifti2:
            try:
                return read_nifti2_as_sitk(path)
            except Exception as exc:  # nibabel and numpy raise many types for damaged files
                self._error(path, f"{role} pixels cannot be read ({type(exc).__name__}: {exc}) — {_REEXPORT}")
                return None
        try:
            return sitk.ReadImage(str(path))
        except RuntimeError as exc:
            self._error(path, f"{role} pixels cannot be read ({_itk_reason(exc)}) — {_REEXPORT}")
            return None

    def _header_ok(self, path: Path, role: str, nifti2: bool) -> bool:
        if not path.is_file():
            self._error(path, f"{role} file does not exist — add it or fix its path in dataset.json")
            return False
        if path.stat().st_size == 0:
            self._error(path, f"{role} file is empty (0 bytes) — {_REEXPORT}")
            return False
        if uncompressed_nifti_named_gz(path):
            self._error(path, f"{role} file is an uncompressed NIfTI named .nii.gz — rename it to .nii, or compress "
                              "it with gzip")
            return False
        if nifti2:
            return self._nifti2_header_ok(path, role)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()  # header only: no pixel buffer yet
        except RuntimeError as exc:
            self._error(path, f"{role} file is not a readable image ({_itk_reason(exc)}) — check that it is a "
                              f"NIfTI, NRRD or MHA image, or {_REEXPORT}")
            return False
        conflict = qform_sform_conflict(path)
        if conflict is not None:
            self._error(path, f"{role} header: {conflict}")
            return False
        size = reader.GetSize()
        if math.prod(size) > MAX_VOXELS or max(size) > MAX_AXIS:
            self._error(path, f"{role} header declares size {_size_text(size)} ({math.prod(size):.3g} voxels), "
                              f"over the limit of 2**31 voxels or {MAX_AXIS} per axis — the header is corrupt; "
                              f"{_REEXPORT}")
            return False
        return self._payload_ok(path, role, reader)

    def _nifti2_header_ok(self, path: Path, role: str) -> bool:
        """A NIfTI-2 header (nibabel): readable and of a sane size; damaged pixel data shows when it is read."""
        try:
            header_shape(path)
        except DataError as exc:
            self._error(path, f"{role} {str(exc).removeprefix(f'{path}: ')}")
            return False
        return True

    def _payload_ok(self, path: Path, role: str, reader: sitk.ImageFileReader) -> bool:
        try:
            payload = _scan_nifti(path, reader)
        except (EOFError, OSError, zlib.error) as exc:
            self._error(path, f"{role} gzip data is damaged ({exc}) — the file is truncated or corrupt; {_REEXPORT}")
            return False
        if payload is None:
            return True
        if payload.found < payload.expected:
            self._error(path, f"{role} file holds {payload.found} bytes of pixel data but its header declares "
                              f"{payload.expected} — the file is truncated; {_REEXPORT}")
            return False
        self._scanned_nonfinite[path] = payload.nan, payload.inf
        return True

    def _image_channels_first(self, image: sitk.Image) -> np.ndarray | None:
        """The pixels as (channel, z, y, x), or None when the image is not a (multi-channel) 3D volume."""
        dim, size, components = image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel()
        if dim == 3:
            found, array = components, sitk.GetArrayViewFromImage(image)
            array = array[None] if components == 1 else np.moveaxis(array, -1, 0)
        elif dim == 4 and components == 1 and (size[3] == 1 or self.channels is not None):
            found, array = size[3], sitk.GetArrayViewFromImage(image)  # already (channel, z, y, x)
        else:
            self._error(self.case.image, _not_3d_message(dim, size, components))
            return None
        if self.channels is not None and found != self.channels:
            self._error(self.case.image, f"image has {found} channel(s) but dataset.json declares {self.channels} "
                                         "— add or drop channels, or fix 'modality' in dataset.json")
        return array

    def _check_finite(self, path: Path, role: str, array: np.ndarray) -> bool:
        """Report NaN/Inf voxels (counted in the raw bytes for NIfTI, whose reader zeroes them)."""
        if path in self._scanned_nonfinite:
            nan, inf = self._scanned_nonfinite[path]
        elif array.dtype.kind == "f" and not np.isfinite(array).all():
            nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        else:
            nan = inf = 0
        if nan or inf:
            self._error(path, f"{role} holds {nan} NaN and {inf} infinite voxel(s) — {_NONFINITE_FIX[role]}")
        return not (nan or inf)

    def _label_array(self, path: Path, label: sitk.Image) -> np.ndarray | None:
        """The label map as (z, y, x), or None when it is not one 3D single-component map."""
        dim, size, components = label.GetDimension(), label.GetSize(), label.GetNumberOfComponentsPerPixel()
        if components != 1:
            self._error(path, f"label has {components} components per voxel — save one integer label per voxel")
        elif dim == 3:
            return sitk.GetArrayViewFromImage(label)
        elif dim == 4 and size[3] == 1:
            return sitk.GetArrayViewFromImage(label)[0]
        else:
            self._error(path, f"label is {dim}D (size {_size_text(size)}) — save the label as one 3D map on the "
                              "image grid")
        return None

    def _check_label_values(self, path: Path, array: np.ndarray, finite: bool) -> dict[int, int] | None:
        """Class voxel counts, or None when some values are invalid (each invalid kind is reported once)."""
        values, counts = _value_counts(array)
        integral = np.isfinite(values) & (values == np.rint(values))
        fractional = values[np.isfinite(values) & ~integral]  # NaN/Inf were reported by _check_finite
        if fractional.size:
            self._error(path, f"label voxel type {array.dtype} holds non-integer values "
                              f"({_values_text(fractional)}) — round the labels and save them as an integer type "
                              "(e.g. uint8)")
        negative = values[integral & (values < 0)]
        if negative.size:
            self._error(path, f"label holds negative values {_values_text(negative)} — labels must be 0 or more; "
                              "remap them")
        outside = values[integral & (values >= self.num_classes)] if self.num_classes is not None else values[:0]
        if outside.size:
            self._error(path, f"label holds values {_values_text(outside)} outside 0..{self.num_classes - 1} "
                              f"(dataset.json declares {self.num_classes} labels) — remap them or declare them "
                              "under 'labels' in dataset.json")
        if values.size and np.all(values == 0):
            self.problems.append(Problem(self.case.case_id, path, "warning", "label holds only background (0) — "
                                         "check that it is the right file; an empty case teaches only background"))
        if not finite or fractional.size or negative.size or outside.size:
            return None
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}

    def _compare_grids(self, path: Path, image: sitk.Image, label: sitk.Image) -> None:
        (i_size, i_spacing, i_origin, i_dir), (l_size, l_spacing, l_origin, l_dir) = _grid(image), _grid(label)
        fix = "resample the label onto the image grid"
        if l_size != i_size:
            self._error(path, f"label size {_size_text(l_size)} differs from image size {_size_text(i_size)} — {fix}")
        if not np.allclose(l_spacing, i_spacing, rtol=SPACING_RTOL, atol=0.0):
            self._error(path, f"label spacing {_fmt(l_spacing)} differs from image spacing {_fmt(i_spacing)} — {fix}")
        if not np.allclose(l_origin, i_origin, rtol=0.0, atol=ORIGIN_ATOL_MM):
            self._error(path, f"label origin {_fmt(l_origin)} differs from image origin {_fmt(i_origin)} — {fix}, "
                              "or copy the image's origin if only the header is wrong")
        if not np.allclose(l_dir, i_dir, rtol=0.0, atol=DIRECTION_ATOL):
            self._error(path, f"label direction {_fmt(l_dir.ravel())} differs from image direction "
                              f"{_fmt(i_dir.ravel())} — {fix}")

    def _stats(self, image: sitk.Image, image_cf: np.ndarray, label: np.ndarray | None,
               counts: dict[int, int]) -> CaseStats:
        size, spacing, _, _ = _grid(image)
        if label is None:
            sample: list[list[float]] = [[] for _ in range(image_cf.shape[0])]
        else:
            sample = sample_foreground(image_cf, label, self.case.case_id)
        return CaseStats(self.case.case_id, tuple(float(s) for s in spacing), tuple(int(s) for s in size), sample,
                         counts)


def check_cases(cases: list[Case], num_classes: int | None, channels: int | None = None,
                cache_path: Path | None = None, *, optional_labels: Collection[str] = ()) -> CheckResult:
    """Check every case and report every problem found; a bad case does not stop the others.

    ``num_classes`` (including background) bounds the label values when given; ``channels`` is the
    declared number of image channels. Cases whose id is in ``optional_labels`` (held-out test cases)
    may lack a label file. With ``cache_path``, results of cases whose files (path, size, mtime) and
    settings are unchanged are taken from that JSON file instead of reading the files again.
    """
    cached = load_cache(cache_path) if cache_path is not None else {}
    entries: dict[str, dict] = {}
    problems: list[Problem] = []
    stats: list[CaseStats] = []
    for case in cases:
        label_optional = case.case_id in optional_labels
        signature = case_signature(case, num_classes, channels, label_optional)
        key = f"{case.case_id}|{case.image}"
        report = cached_report(cached.get(key), signature)
        if report is None:
            report = _CaseCheck(case, num_classes, channels, label_optional).run()
        entries[key] = cache_entry(signature, report)
        problems += report.problems
        if report.stats is not None:
            stats.append(report.stats)
    if cache_path is not None and entries != cached:
        save_cache(cache_path, entries)
    return CheckResult(problems, len(cases), stats)
