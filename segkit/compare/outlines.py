"""What the qualitative panel draws for a label map slice: each label's outline and a translucent tint.

Coordinates are those of ``imshow(np.rot90(labels))``: x is the column and y the row of the rotated slice, pixel
centres at integers. The slice is padded with one pixel of background before it is contoured, so a label that
touches the edge of the slice, or covers all of it, still gets a closed outline (along the image edge, half a
pixel outside the outermost pixel centres) instead of an open line or none at all.
"""

from __future__ import annotations

import contourpy
import numpy as np
from matplotlib.colors import to_rgba

from segkit.report.preview import class_colour


def outlines(labels: np.ndarray) -> dict[int, list[np.ndarray]]:
    """Per foreground label of the 2D slice ``labels``, its closed outlines as (n, 2) arrays of (x, y) points."""
    shown = np.rot90(labels)
    rows, cols = shown.shape
    found = {}
    for k in (int(v) for v in np.unique(shown) if v > 0):
        mask = np.pad(shown == k, 1).astype(np.float64)
        lines = contourpy.contour_generator(np.arange(-1, cols + 1), np.arange(-1, rows + 1), mask,
                                            line_type="Separate").lines(0.5)
        found[k] = [np.asarray(line) for line in lines]
    return found


def tint(labels: np.ndarray, alpha: float = 0.3) -> np.ndarray:
    """An RGBA image of the rotated slice: each labelled pixel in its class colour at ``alpha``, the rest clear."""
    shown = np.rot90(labels)
    rgba = np.zeros((*shown.shape, 4))
    for k in (int(v) for v in np.unique(shown) if v > 0):
        rgba[shown == k] = (*to_rgba(class_colour(k))[:3], alpha)
    return rgba
