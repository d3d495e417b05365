"""The checks of one case: every channel file, the label and how they fit together, each file read once.

:class:`CaseCheck` holds what 2D and 3D cases share (reading, label values, statistics); its subclasses
(:mod:`segkit.data.check` for volumes, :mod:`segkit.data.check_2d` for 2D images) say what a valid
image and label look like and how their grids are compared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from segkit.data.cases import Case
from segkit.data.check_files import FileChecks
from segkit.data.check_results import CaseReport, Problem
from segkit.data.fingerprint import CaseStats, sample_foreground

Grid = tuple[tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]  # size, spacing, origin, direction


def world_axis_order(direction: np.ndarray) -> tuple[int, ...]:
    """For each world axis (x, y, z), the array axis closest to it: the order of the array's axes once it is
    reoriented (``data.orientation`` RAS or LPS; nibabel's ``io_orientation``, which MONAI's Orientation uses)."""
    dims = direction.shape[0]
    affine = np.eye(dims + 1)
    affine[:dims, :dims] = direction
    world_of_array_axis = nib.orientations.io_orientation(affine)[:, 0].astype(int)
    return tuple(int(np.flatnonzero(world_of_array_axis == w)[0]) for w in range(dims))


@dataclass(frozen=True)
class LabelBound:
    """Label values must lie in ``0..num_classes - 1``; ``declared_by`` and ``fix`` name where that comes from."""

    num_classes: int
    declared_by: str
    fix: str

    @classmethod
    def from_manifest(cls, num_classes: int) -> LabelBound:
        """The label set dataset.json declares."""
        return cls(num_classes, f"dataset.json declares {num_classes} labels",
                   "declare them under 'labels' in dataset.json")

    @classmethod
    def from_model(cls, num_classes: int) -> LabelBound:
        """``model.num_classes``, for layouts that declare no label set."""
        return cls(num_classes, f"model.num_classes is {num_classes}", "set model.num_classes")


BLACK_WHITE_FIX = ("a binary mask saved as black and white (0/255) is read as class 255; save it as the class "
                   "numbers 0/1 (e.g. numpy: (mask > 0).astype('uint8'))")


def _values_text(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(f"{float(v):g}" for v in values[:limit])
    return shown if values.size <= limit else f"{shown}, … ({values.size} values)"


def _value_counts(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their voxel counts (bincount for small non-negative integers: no sort)."""
    if array.dtype.kind in "ui" and np.can_cast(array.dtype, np.intp) and array.size:
        low, high = int(array.min()), int(array.max())
        if low >= 0 and high < 2**16:
            counts = np.bincount(array.ravel(), minlength=high + 1)
            values = np.flatnonzero(counts)
            return values, counts[values]
    return np.unique(array, return_counts=True)


class CaseCheck(FileChecks, ABC):
    """The checks of one case; collects every problem instead of stopping at the first.

    ``channels`` is the declared number of image channels; with one file per channel (nnU-Net's
    ``CASE_XXXX``) each file must hold one, and each further channel is compared with the first.
    """

    def __init__(self, case: Case, bound: LabelBound | None, channels: int | None, label_optional: bool) -> None:
        super().__init__(case.case_id)
        self.case, self.bound, self.label_optional = case, bound, label_optional
        self.channels = 1 if case.extra_channels else channels

    # what subclasses define: the image as (channel, *spatial), the label as (*spatial), the grid comparison
    @abstractmethod
    def _image_channels_first(self, path: Path, image: sitk.Image) -> np.ndarray | None: ...

    @abstractmethod
    def _label_array(self, path: Path, label: sitk.Image) -> np.ndarray | None: ...

    @abstractmethod
    def _compare_grids(self, path: Path, reference: sitk.Image, other: sitk.Image, role: str) -> None: ...

    @abstractmethod
    def _grid(self, image: sitk.Image) -> Grid: ...

    def run(self) -> CaseReport:
        """Every check of the case; statistics only when no check found an error."""
        image, channels = self._read_channels()
        label_path = self._label_path()
        label = self._read(label_path, "label") if label_path is not None else None
        label_array = self._label_array(label_path, label) if label is not None else None
        counts = None
        if label_array is not None:
            finite = self._check_finite(label_path, "label", label_array)
            counts = self._check_label_values(label_path, label_array, finite)
        if image is not None and label_array is not None:
            self._compare_grids(label_path, image, label, "label")
        if channels is None or any(p.severity == "error" for p in self.problems):
            return CaseReport(self.problems, None)
        return CaseReport(self.problems, self._stats(image, channels, label_array, counts or {}))

    def _read_image(self, path: Path) -> tuple[sitk.Image, np.ndarray] | None:
        image = self._read(path, "image")
        array = self._image_channels_first(path, image) if image is not None else None
        if array is None:
            return None
        self._check_finite(path, "image", array)
        return image, array

    def _read_channels(self) -> tuple[sitk.Image | None, list[tuple[sitk.Image, np.ndarray]] | None]:
        """The first channel's image (for the label's grid) and every channel file's image and pixels (None if
        any is bad; the pixels are views, valid while their image lives); a problem of a further channel file is
        reported against that file."""
        first = self._read_image(self.case.image)
        parts = [first]
        for path in self.case.extra_channels:
            other = self._read_image(path)
            if first is not None and other is not None:
                self._compare_grids(path, first[0], other[0], "channel")
            parts.append(other)
        channels = None if any(part is None for part in parts) else parts
        return (first[0] if first is not None else None), channels

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
        bound = self.bound
        outside = values[integral & (values >= bound.num_classes)] if bound is not None else values[:0]
        black_white = values.size == 2 and values[0] == 0 and values[1] == 255  # a mask drawn in black and white
        if outside.size:
            fix = BLACK_WHITE_FIX if black_white else f"remap them or {bound.fix}"
            self._error(path, f"label holds values {_values_text(outside)} outside 0..{bound.num_classes - 1} "
                              f"({bound.declared_by}) — {fix}")
        elif black_white and bound is None:
            self.problems.append(Problem(self.case_id, path, "warning", f"label holds only 0 and 255 — "
                                         f"{BLACK_WHITE_FIX}"))
        if values.size and np.all(values == 0):
            self.problems.append(Problem(self.case_id, path, "warning", "label holds only background (0) — "
                                         "check that it is the right file; an empty case teaches only background"))
        if not finite or fractional.size or negative.size or outside.size:
            return None
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}

    def _stats(self, image: sitk.Image, channels: list[tuple[sitk.Image, np.ndarray]], label: np.ndarray | None,
               counts: dict[int, int]) -> CaseStats:
        size, spacing, _, direction = self._grid(image)
        order = world_axis_order(direction)  # as training sees the image: reoriented, axes in x, y, z order
        size, spacing = tuple(size[a] for a in order), spacing[list(order)]
        sample: list[list[float]] = []
        for _, array in channels:  # the same voxels of every channel file: the draw is seeded by the case id
            sample += [[] for _ in range(array.shape[0])] if label is None else sample_foreground(array, label,
                                                                                                  self.case_id)
        return CaseStats(self.case_id, tuple(float(s) for s in spacing), tuple(int(s) for s in size), sample,
                         counts)
