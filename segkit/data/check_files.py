"""Reading one file for the dataset check: the header first, then one pixel read, every problem collected.

A corrupt header that declares an enormous image is refused before anything is allocated. NIfTI
files are also streamed through once in small chunks, because ITK 5 silently zero-fills truncated
data and turns NaN/Inf into 0.
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import SimpleITK as sitk

from segkit.data.check_results import Problem
from segkit.data.nifti_geometry import qform_sform_conflict, sheared_axes
from segkit.errors import DataError
from segkit.io.atomic import full_suffix
from segkit.io.image_io import (
    MAX_AXIS,
    MAX_VOXELS,
    gzipped_nifti_named_nii,
    header_shape,
    uncompressed_nifti_named_gz,
)
from segkit.io.nifti2 import is_nifti2, read_nifti2_as_sitk

REEXPORT = "copy or export the file again"
_CHUNK = 1 << 20
# NIfTI datatype codes of float pixels (complex ones as pairs of floats)
_NIFTI_FLOATS = {16: np.dtype("f4"), 32: np.dtype("f4"), 64: np.dtype("f8"), 1792: np.dtype("f8")}
_NONFINITE_FIX = {"image": "replace them (e.g. with the lowest valid intensity) and save the image again",
                  "label": "set them to a class value and save the label as integers"}


def fmt(values) -> str:
    """Numbers as ``(a, b, c)`` with 6 significant digits."""
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def size_text(size) -> str:
    """A size as ``a×b×c``."""
    return "×".join(str(s) for s in size)


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


class FileChecks:
    """Reads files for one case and collects the problems found (``problems``) instead of stopping."""

    formats = "a NIfTI, NRRD or MHA image"  # named when a file is not a readable image

    def __init__(self, case_id: str) -> None:
        self.case_id = case_id
        self.problems: list[Problem] = []
        self._scanned_nonfinite: dict[Path, tuple[int, int]] = {}  # NaN/Inf counts from the raw NIfTI bytes

    def _error(self, file: Path, message: str) -> None:
        self.problems.append(Problem(self.case_id, file, "error", message))

    def _read(self, path: Path, role: str) -> sitk.Image | None:
        """Header checks, then the one pixel read of this file."""
        nifti2 = is_nifti2(path)  # SimpleITK reads only NIfTI-1: these go through nibabel
        if not self._header_ok(path, role, nifti2):
            return None
        if nifti2:
            try:
                return read_nifti2_as_sitk(path)
            except Exception as exc:  # nibabel and numpy raise many types for damaged files
                self._error(path, f"{role} pixels cannot be read ({type(exc).__name__}: {exc}) — {REEXPORT}")
                return None
        try:
            return sitk.ReadImage(str(path))
        except RuntimeError as exc:
            self._error(path, f"{role} pixels cannot be read ({_itk_reason(exc)}) — {REEXPORT}")
            return None

    def _header_ok(self, path: Path, role: str, nifti2: bool) -> bool:
        if not path.is_file():
            self._error(path, f"{role} file does not exist — add it or fix its path in dataset.json")
            return False
        if path.stat().st_size == 0:
            self._error(path, f"{role} file is empty (0 bytes) — {REEXPORT}")
            return False
        if uncompressed_nifti_named_gz(path):
            self._error(path, f"{role} file is an uncompressed NIfTI named .nii.gz — rename it to .nii, or compress "
                              "it with gzip")
            return False
        if gzipped_nifti_named_nii(path):
            self._error(path, f"{role} file is a gzip-compressed NIfTI named .nii — rename it to .nii.gz, or "
                              "decompress it with gunzip")
            return False
        if nifti2:
            return self._nifti2_header_ok(path, role)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()  # header only: no pixel buffer yet
        except RuntimeError as exc:
            sheared = sheared_axes(path)
            self._error(path, f"{role} header: {sheared}" if sheared else f"{role} file is not a readable image "
                        f"({_itk_reason(exc)}) — check that it is {self.formats}, or {REEXPORT}")
            return False
        conflict = qform_sform_conflict(path)
        if conflict is not None:
            self._error(path, f"{role} header: {conflict}")
            return False
        size = reader.GetSize()
        if math.prod(size) > MAX_VOXELS or max(size) > MAX_AXIS:
            self._error(path, f"{role} header declares size {size_text(size)} ({math.prod(size):.3g} voxels), "
                              f"over the limit of 2**31 voxels or {MAX_AXIS} per axis — the header is corrupt; "
                              f"{REEXPORT}")
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
            self._error(path, f"{role} gzip data is damaged ({exc}) — the file is truncated or corrupt; {REEXPORT}")
            return False
        if payload is None:
            return True
        if payload.found < payload.expected:
            self._error(path, f"{role} file holds {payload.found} bytes of pixel data but its header declares "
                              f"{payload.expected} — the file is truncated; {REEXPORT}")
            return False
        self._scanned_nonfinite[path] = payload.nan, payload.inf
        return True

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
