"""The compare report's artefact panel: logits turned into the preview's view whatever order the network's grid
stores, a window on the foreground's top edge as shown, colour bars clear of the next map, and panels saved
before they were turned still read and captioned as they are."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from segkit.compare.measure import PanelSlice, load_panel, save_panel
from segkit.compare.panels import artefact_maps, zoom_window
from segkit.compare.slices import display_plane
from tests.compare.test_panels import _captured_artefacts, _panel_run

# Logits (K=2, 12, 10, 8) stored in the display order itself (LAS+: axis 0 towards the patient's left, axis 1
# anterior, axis 2 superior), 1 mm voxels, with a marker on the patient's right, anterior, in every axial slice.
LAS_AFFINE = np.diag([-1.0, 1.0, 1.0, 1.0])


def _las_logits() -> np.ndarray:
    logits = np.random.default_rng(0).normal(size=(2, 12, 10, 8)).astype(np.float32)
    logits[1, 0:3, 7:10, :] = 5.0
    return logits


def _stored_other_ways(las: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """The same world content stored RAS (axis 0 towards the right) and z-first RAS: (logits, affine, z axis)."""
    ras = las[:, ::-1]
    ras_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    ras_affine[0, 3] = -11.0  # RAS voxel j lies where LAS voxel 11 - j does: x = j - 11
    z_first = ras.transpose(0, 3, 2, 1)
    z_first_affine = np.array([[0, 0, 1, -11], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
    return [(ras, ras_affine, 2), (z_first, z_first_affine, 0)]


def test_the_logit_slice_is_turned_into_the_previews_view_whatever_order_the_grid_stores() -> None:
    las = _las_logits()
    expected, view = display_plane(las, LAS_AFFINE, 2, 3)
    np.testing.assert_array_equal(expected, las[:, :, :, 3])
    assert view == "axial"
    shown = np.rot90(expected[1])  # as the panel draws it
    assert (shown[0:3, 0:3] == 5.0).all()  # patient's right on the screen's left, anterior at the top
    for logits, affine, z_axis in _stored_other_ways(las):
        got, view = display_plane(logits, affine, z_axis, 3)
        np.testing.assert_array_equal(got, expected)  # before: a RAS grid showed the patient's right on the right
        assert view == "axial"


def test_a_slice_across_the_left_right_axis_is_sagittal() -> None:
    las = _las_logits()
    got, view = display_plane(las, LAS_AFFINE, 0, 1)
    assert view == "sagittal"
    np.testing.assert_array_equal(got, las[:, 1])


def test_a_grid_whose_axes_cannot_be_told_apart_is_shown_as_stored() -> None:
    las = _las_logits()
    got, view = display_plane(las, np.diag([0.0, 0.0, 0.0, 1.0]), 2, 3)
    assert view is None
    np.testing.assert_array_equal(got, las[:, :, :, 3])


def test_the_zoom_window_is_centred_on_the_top_edge_of_the_foreground_as_shown() -> None:
    margin = np.full((100, 90), -1.0)
    margin[20:41, 10:31] = 1.0  # axis 1 is drawn bottom to top: its top edge is column 30
    rows, cols = zoom_window(margin, size=48)
    shown = np.rot90(margin[rows, cols])
    top_row = np.flatnonzero((shown > 0).any(axis=1))[0]
    across = np.flatnonzero((shown > 0).any(axis=0))
    assert abs(top_row - 24) <= 1  # the edge halfway down the window, inside below it and outside above
    assert abs((across[0] + across[-1]) / 2 - 23.5) <= 1  # and centred left to right


def test_colour_bar_ticks_stay_clear_of_the_next_map() -> None:
    rng = np.random.default_rng(1)
    scales = [1e-4, 1e3, 1e-4, 1e5]  # tick labels as long as -0.00037 and -3.7e+03
    maps = {f"v{i}": rng.normal(size=(2, 60, 60)).astype(np.float32) * scale for i, scale in enumerate(scales)}
    windows = {label: zoom_window(m[1] - m[0]) for label, m in maps.items()}
    figure = artefact_maps(maps, {label: label for label in maps}, windows)
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    images = [ax for ax in figure.axes if ax.images]
    assert len(bars) == len(images) == 8
    for bar in bars:
        box = bar.get_tightbbox(renderer)
        right = [ax.get_window_extent(renderer) for ax in images if ax.get_window_extent(renderer).x0 > box.x0]
        same_row = [e for e in right if e.y0 < box.y1 and e.y1 > box.y0]
        assert all(box.x1 <= e.x0 for e in same_row), "a colour bar's tick labels run into the next map"


def test_a_panel_saved_before_panels_were_turned_is_read_and_captioned_as_stored(tmp_path, monkeypatch) -> None:
    groups = {"base": [_panel_run(tmp_path, "base", 0)]}
    panel = groups["base"][0].folder / "panel.npz"
    old = load_panel(panel)
    np.savez_compressed(panel, logits=old.logits.astype(np.float16), case_id=np.array("case"), axis=np.array(2),
                        index=np.array(20))  # no ``view``: written by segkit before this change
    assert load_panel(panel).view is None
    _, caption = _captured_artefacts(monkeypatch, groups, "base")
    assert "slice 20 across axis 2 of the network's grid, as stored (its first axis left to right" in caption


def test_a_turned_panel_keeps_its_view_and_the_caption_says_how_it_is_shown(tmp_path, monkeypatch) -> None:
    groups = {"base": [_panel_run(tmp_path, "base", 0)]}
    panel = groups["base"][0].folder / "panel.npz"
    old = load_panel(panel)
    save_panel(panel, PanelSlice(old.case_id, old.logits, 2, 20, "axial"))
    assert load_panel(panel).view == "axial"
    _, caption = _captured_artefacts(monkeypatch, groups, "base")
    assert ("axial slice 20 across axis 2 of the network's grid, shown with the patient's right on the left, "
            "anterior up: a 48×48-voxel window centred on the top edge") in caption
