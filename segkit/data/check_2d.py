"""The dataset check for 2D image files (``data.image_dims: 2``, e.g. PNG or TIFF in the folder layout).

A 2D case is an image of one or more components (grey, RGB, …) and a one-component integer label map
of the same width and height. Plain image formats carry no patient geometry, so only the size is
compared; values are checked as for volumes (finite, whole, not negative, within the classes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image

from segkit.data.cases import Case, DatasetIndex
from segkit.data.check_case import CaseCheck, Grid
from segkit.data.check_files import size_text
from segkit.io.atomic import full_suffix
from segkit.io.image_io import header_components

PLANAR_SUFFIXES = (".png", ".tif", ".tiff")
_FIX = {"label": ("label", "image", "save the label with the image's width and height"),
        "channel": ("channel", "first channel", "save every channel with the same width and height")}


def image_channels(index: DatasetIndex, image_dims: int) -> int | None:
    """The image channels of a dataset: as declared (or one file per channel) or, for 2D images stored one file per
    case, the components per pixel of the first training image (RGB: 3), which every image must then have."""
    first = index.training[0] if index.training else None
    if image_dims != 2 or first is None or first.extra_channels:
        return index.channels
    components = header_components(first.image)  # None: unreadable, which the dataset check reports
    return components if components is not None and components > 1 else index.channels


def is_palette_image(path: Path) -> bool:
    """Whether ``path`` is a palette (indexed-colour) PNG or TIFF, whose pixels are indices into a colour table:
    SimpleITK reads such a file as the table's RGB colours. Pillow reads only the header here."""
    try:
        with Image.open(path) as image:
            return image.mode in ("P", "PA")
    except (OSError, ValueError):  # not an image Pillow knows: not a palette image
        return False


def colour_label_message(path: Path, components: int | None = None) -> str | None:
    """What is wrong with a label map of several components per pixel (``components``; read from the header of a
    PNG or TIFF when None), or None for a one-component map. A palette image gets its own fix: its indices are
    the class numbers, but readers give its colours."""
    if components is None:
        if full_suffix(path).lower() not in PLANAR_SUFFIXES:
            return None
        components = header_components(path)  # None: unreadable, which reading the pixels reports
    if components is None or components == 1:
        return None
    if is_palette_image(path):
        return ("label is a palette (indexed-colour) image, which is read as its palette's colours — save the "
                "palette indices (the class numbers) as grey values, e.g. with Pillow: "
                "Image.fromarray(numpy.asarray(Image.open(path))).save(path)")
    return (f"label has {components} components per pixel (a colour image) — save the label as one grey value per "
            "pixel, the class number 0..K")


def planar_files(cases: list[Case]) -> bool:
    """Whether every image of ``cases`` is a plain 2D format (PNG or TIFF)."""
    return bool(cases) and all(full_suffix(path).lower() in PLANAR_SUFFIXES for case in cases for path in case.images)


def _is_2d(image: sitk.Image) -> bool:
    """2D, or 3D with one slice (a 2D image some writers store with a third axis of length 1)."""
    return image.GetDimension() == 2 or (image.GetDimension() == 3 and image.GetSize()[2] == 1)


def _array_2d(image: sitk.Image) -> np.ndarray:
    """The pixels as (y, x) or (y, x, component)."""
    array = sitk.GetArrayViewFromImage(image)
    return array[0] if image.GetDimension() == 3 else array


class PlanarCheck(CaseCheck):
    """A 2D case: 2D images (any number of components) and a one-component 2D label map of the same size."""

    formats = "a PNG or TIFF image"

    def _grid(self, image: sitk.Image) -> Grid:
        """Size, spacing and origin of the two image axes (the direction is the identity for plain images)."""
        return (tuple(image.GetSize()[:2]), np.asarray(image.GetSpacing()[:2]), np.asarray(image.GetOrigin()[:2]),
                np.eye(2))

    def _image_channels_first(self, path: Path, image: sitk.Image) -> np.ndarray | None:
        """The pixels as (channel, y, x), or None when the image is not 2D."""
        components = image.GetNumberOfComponentsPerPixel()
        if not _is_2d(image):
            self._error(path, f"image is {image.GetDimension()}D (size {size_text(image.GetSize())}) — "
                              "data.image_dims: 2 takes one 2D image per file (PNG or TIFF); train on volumes with "
                              "data.image_dims: 3")
            return None
        if self.case.extra_channels and components != 1:
            self._error(path, f"image file holds {components} components but this dataset has one file per channel "
                              "— save each channel as a grey image of its own")
        elif self.channels is not None and components != self.channels:
            self._error(path, f"image has {components} component(s) per pixel but the dataset's images have "
                              f"{self.channels} (as its first training image) — save every image alike: all grey, "
                              "or all colour (RGB: model.in_channels 3)")
        array = _array_2d(image)
        return array[None] if components == 1 else np.moveaxis(array, -1, 0)

    def _label_array(self, path: Path, label: sitk.Image) -> np.ndarray | None:
        """The label map as (y, x), or None when it is not one 2D single-component map."""
        colour = colour_label_message(path, label.GetNumberOfComponentsPerPixel())
        if colour is not None:
            self._error(path, colour)
            return None
        if not _is_2d(label):
            self._error(path, f"label is {label.GetDimension()}D (size {size_text(label.GetSize())}) — save the "
                              "label as one 2D map of the image's size")
            return None
        return _array_2d(label)

    def _compare_grids(self, path: Path, reference: sitk.Image, other: sitk.Image, role: str) -> None:
        """Only the size: plain 2D formats carry no patient geometry to compare."""
        (r_size, *_), (o_size, *_) = self._grid(reference), self._grid(other)
        what, ref, fix = _FIX[role]
        if o_size != r_size:
            self._error(path, f"{what} size {size_text(o_size)} differs from {ref} size {size_text(r_size)} — {fix}")
