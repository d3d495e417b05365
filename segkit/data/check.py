"""Dataset integrity check: every problem of every case, each image and label read once.

For each file the header is read first (no pixel buffer), then SimpleITK reads the pixels once and
every check, plus the statistics the fingerprint needs, works on that one read
(:mod:`segkit.data.check_files`, :mod:`segkit.data.check_case`). This module says what a valid 3D
case is; :mod:`segkit.data.check_2d` does the same for 2D image files. Results can be cached per case,
keyed by each file's path, size and modification time, so an unchanged dataset is not read again.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from segkit.data.cases import Case
from segkit.data.check_2d import PlanarCheck
from segkit.data.check_case import CaseCheck, Grid, LabelBound
from segkit.data.check_files import fmt, size_text
from segkit.data.check_results import (
    CheckResult,
    Problem,
    cache_entry,
    cached_report,
    case_signature,
    load_cache,
    save_cache,
)
from segkit.data.fingerprint import CaseStats

__all__ = ["CheckResult", "LabelBound", "Problem", "VolumeCheck", "check_cases"]

SPACING_RTOL = 1e-3
ORIGIN_ATOL_MM = 1e-3
DIRECTION_ATOL = 1e-4
# role → (what is compared, with what, how to fix it)
_GRID_WORDS = {"label": ("label", "image", "resample the label onto the image grid", "the image's"),
               "channel": ("channel", "first channel", "resample this channel onto the first channel's grid",
                           "the first channel's")}


def _not_3d_message(dim: int, size: tuple[int, ...], components: int) -> str:
    what = f"image is {dim}D (size {size_text(size)}" + (f", {components} components)" if components > 1 else ")")
    if dim < 3:
        return (f"{what} — this check is for 3D volumes: stack the slices into one 3D file, or train a 2D model on "
                "2D images: data.image_dims: 2, model.spatial_dims: 2 and a 2D train.patch_size (the packaged config "
                "unet_resnet34_2d sets them)")
    if dim == 4 and components == 1:
        return (f"{what} and dataset.json declares no channels — list one 'modality' per entry of the 4th axis, "
                "or save a 3D volume")
    return f"{what} — save a 3D volume, with the channels (if several) as the 4th axis"


class VolumeCheck(CaseCheck):
    """A 3D case: (multi-channel) volumes and a 3D label map on the same grid."""

    def _grid(self, image: sitk.Image) -> Grid:
        """Size, spacing, origin and direction of the first three (spatial) axes."""
        n = image.GetDimension()
        direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(n, n)[:3, :3]
        return (tuple(image.GetSize()[:3]), np.asarray(image.GetSpacing()[:3]), np.asarray(image.GetOrigin()[:3]),
                direction)

    def _image_channels_first(self, path: Path, image: sitk.Image) -> np.ndarray | None:
        """The pixels as (channel, z, y, x), or None when the image is not a (multi-channel) 3D volume."""
        dim, size, components = image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel()
        if dim == 3:
            found, array = components, sitk.GetArrayViewFromImage(image)
            array = array[None] if components == 1 else np.moveaxis(array, -1, 0)
        elif dim == 4 and components == 1 and (size[3] == 1 or self.channels is not None):
            found, array = size[3], sitk.GetArrayViewFromImage(image)  # already (channel, z, y, x)
        else:
            self._error(path, _not_3d_message(dim, size, components))
            return None
        if self.case.extra_channels and found != 1:
            self._error(path, f"image file holds {found} channels but this dataset has one file per channel — save "
                              "each channel as its own CASE_XXXX file")
        elif self.channels is not None and found != self.channels:
            self._error(path, f"image has {found} channel(s) but dataset.json declares {self.channels} — add or drop "
                              "channels, or fix 'modality' in dataset.json")
        return array

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
            self._error(path, f"label is {dim}D (size {size_text(size)}) — save the label as one 3D map on the "
                              "image grid")
        return None

    def _compare_grids(self, path: Path, reference: sitk.Image, other: sitk.Image, role: str) -> None:
        """``other`` (the label, or a further channel at ``path``) on ``reference``'s grid (the first channel)."""
        (r_size, r_spacing, r_origin, r_dir), (o_size, o_spacing, o_origin, o_dir) = (self._grid(reference),
                                                                                      self._grid(other))
        what, ref, fix, owner = _GRID_WORDS[role]
        if o_size != r_size:
            self._error(path, f"{what} size {size_text(o_size)} differs from {ref} size {size_text(r_size)} — {fix}")
        if not np.allclose(o_spacing, r_spacing, rtol=SPACING_RTOL, atol=0.0):
            self._error(path, f"{what} spacing {fmt(o_spacing)} differs from {ref} spacing {fmt(r_spacing)} — {fix}")
        if not np.allclose(o_origin, r_origin, rtol=0.0, atol=ORIGIN_ATOL_MM):
            self._error(path, f"{what} origin {fmt(o_origin)} differs from {ref} origin {fmt(r_origin)} — {fix}, "
                              f"or copy {owner} origin if only the header is wrong")
        if not np.allclose(o_dir, r_dir, rtol=0.0, atol=DIRECTION_ATOL):
            self._error(path, f"{what} direction {fmt(o_dir.ravel())} differs from {ref} direction "
                              f"{fmt(r_dir.ravel())} — {fix}")


def check_cases(cases: list[Case], num_classes: int | LabelBound | None, channels: int | None = None,
                cache_path: Path | None = None, *, optional_labels: Collection[str] = (),
                image_dims: int = 3) -> CheckResult:
    """Check every case and report every problem found; a bad case does not stop the others.

    ``num_classes`` (including background; an int means dataset.json declares them) bounds the label
    values when given; ``channels`` is the declared number of image channels; ``image_dims`` 2 checks
    2D image files. Cases whose id is in ``optional_labels`` (held-out test cases) may lack a label
    file. With ``cache_path``, results of cases whose files (path, size, mtime) and settings are
    unchanged are taken from that JSON file instead of reading the files again.
    """
    bound = LabelBound.from_manifest(num_classes) if isinstance(num_classes, int) else num_classes
    checker = PlanarCheck if image_dims == 2 else VolumeCheck
    cached = load_cache(cache_path) if cache_path is not None else {}
    entries: dict[str, dict] = {}
    problems: list[Problem] = []
    stats: list[CaseStats] = []
    for case in cases:
        label_optional = case.case_id in optional_labels
        signature = case_signature(case, vars(bound) if bound else None, channels, label_optional, image_dims)
        key = f"{case.case_id}|{case.image}"
        report = cached_report(cached.get(key), signature)
        if report is None:
            report = checker(case, bound, channels, label_optional).run()
        entries[key] = cache_entry(signature, report)
        problems += report.problems
        if report.stats is not None:
            stats.append(report.stats)
    if cache_path is not None and entries != cached:
        save_cache(cache_path, entries)
    return CheckResult(problems, len(cases), stats)
