"""The qualitative panel's drawing data: closed outlines and tints, also for labels that fill or touch the slice."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.image import imread

from segkit.compare.outlines import outlines, tint
from segkit.compare.panels import qualitative_figure
from segkit.report.preview import class_colour

ROWS, COLS = 10, 7  # the slice as stored; shown rotated (np.rot90): 7 rows × 10 columns


def _bounds(line: np.ndarray) -> tuple[float, float, float, float]:
    return float(line[:, 0].min()), float(line[:, 0].max()), float(line[:, 1].min()), float(line[:, 1].max())


def test_a_label_that_fills_the_slice_is_outlined_along_its_edge() -> None:
    found = outlines(np.ones((ROWS, COLS), np.uint8))
    assert list(found) == [1] and len(found[1]) == 1
    line = found[1][0]
    np.testing.assert_allclose(line[0], line[-1])  # closed
    assert _bounds(line) == pytest.approx((-0.5, ROWS - 0.5, -0.5, COLS - 0.5))  # the whole shown image


def test_a_label_touching_the_edge_gets_a_closed_outline_that_runs_along_it() -> None:
    labels = np.zeros((ROWS, COLS), np.uint8)
    labels[2:5, :3] = 2  # the first three columns: the bottom three rows once rotated
    labels[6:8, 3:5] = 1  # inside
    found = outlines(labels)
    assert sorted(found) == [1, 2] and len(found[1]) == len(found[2]) == 1
    edge, inner = found[2][0], found[1][0]
    np.testing.assert_allclose(edge[0], edge[-1])
    assert _bounds(edge) == pytest.approx((1.5, 4.5, COLS - 3.5, COLS - 0.5))  # reaches the image's bottom edge
    assert _bounds(inner) == pytest.approx((5.5, 7.5, COLS - 5.5, COLS - 3.5))


def test_tint_colours_every_labelled_pixel_and_nothing_else() -> None:
    labels = np.zeros((ROWS, COLS), np.uint8)
    labels[:, :2] = 3
    rgba = tint(labels, alpha=0.4)
    shown = np.rot90(labels)
    assert rgba.shape == (COLS, ROWS, 4)
    np.testing.assert_allclose(rgba[shown == 3], [[*class_colour(3), 0.4]] * int((shown == 3).sum()))
    assert not rgba[shown == 0].any()
    np.testing.assert_array_equal(tint(np.ones((ROWS, COLS), np.uint8))[..., 3], 0.3)


def _colour_pixels(png: bytes, colour: tuple[float, float, float]) -> int:
    pixels = imread(io.BytesIO(png), format="png")[..., :3]
    return int((np.abs(pixels - np.asarray(colour)).max(axis=-1) < 0.08).sum())


def test_a_prediction_covering_the_whole_slice_shows_in_the_figure() -> None:
    rng = np.random.default_rng(3)
    image = rng.normal(size=(24, 16)).astype(np.float32)
    reference = np.zeros((24, 16), np.uint8)
    reference[6:14, 4:10] = 2  # another class, so class 1's colour comes only from the prediction (and legend)
    full, empty = np.ones_like(reference), np.zeros_like(reference)
    names = ["organ", "tumour"]
    shown = qualitative_figure(image, reference, {"variant": full}, names, "case")
    hidden = qualitative_figure(image, reference, {"variant": empty}, names, "case")
    colour = class_colour(1)
    assert _colour_pixels(shown, colour) > _colour_pixels(hidden, colour) + 200  # its outline along the whole edge
