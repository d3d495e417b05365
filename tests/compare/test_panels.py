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


def _panel_run(folder, label: str, seed: int, shape: tuple[int, int] = (40, 40)):
    from segkit.compare.measure import PANEL, PanelSlice, save_panel
    from segkit.compare.results import RunResult

    run_folder = folder / label / f"seed{seed}"
    run_folder.mkdir(parents=True)
    logits = np.zeros((2, *shape), np.float32)
    logits[1, shape[0] // 4:, :] = 1.0
    save_panel(run_folder / PANEL, PanelSlice("case", logits, 2, shape[0] // 2))
    return RunResult(label, seed, run_folder, {"summary": {"checkerboard_index": 0.1 * (seed + 1)}}, ([], []))


def _captured_artefacts(monkeypatch: pytest.MonkeyPatch, groups: dict, baseline: str) -> tuple[dict, str]:
    from segkit.compare import panel_data

    seen: dict = {}
    monkeypatch.setattr(panel_data, "artefact_figure",
                        lambda maps, titles, windows: seen.update(maps=maps, titles=titles, windows=windows) or b"")
    image = panel_data.artefact_blocks(groups, baseline)[-1]
    return seen, image.caption


def test_panels_use_the_baselines_seed_for_every_variant_that_has_it(tmp_path, monkeypatch) -> None:
    from segkit.compare.panel_data import panel_runs

    groups = {"base": [_panel_run(tmp_path, "base", 1), _panel_run(tmp_path, "base", 2)],
              "other": [_panel_run(tmp_path, "other", 0), _panel_run(tmp_path, "other", 1)]}
    runs, seed = panel_runs(groups, "base")
    assert seed == 1 and {label: r.seed for label, r in runs.items()} == {"base": 1, "other": 1}
    seen, caption = _captured_artefacts(monkeypatch, groups, "base")
    assert "(seed 1 of each variant)" in caption
    assert seen["titles"]["other"] == "other\ncheckerboard 0.2"  # seed 1's index, not seed 0's


def test_panels_name_each_seed_when_not_every_variant_has_the_baselines(tmp_path, monkeypatch) -> None:
    groups = {"base": [_panel_run(tmp_path, "base", 0)], "other": [_panel_run(tmp_path, "other", 1)]}
    seen, caption = _captured_artefacts(monkeypatch, groups, "base")
    assert "each variant's lowest finished seed, named in its title" in caption and "seed 0 of each" not in caption
    assert [t.split("\n")[0] for t in seen["titles"].values()] == ["base (seed 0)", "other (seed 1)"]


def test_a_variant_on_another_grid_is_shown_on_its_own_and_the_caption_says_so(tmp_path, monkeypatch) -> None:
    groups = {"base": [_panel_run(tmp_path, "base", 0)], "coarse": [_panel_run(tmp_path, "coarse", 0, (20, 20))],
              "same": [_panel_run(tmp_path, "same", 0)]}
    seen, caption = _captured_artefacts(monkeypatch, groups, "base")
    assert list(seen["maps"]) == ["base", "coarse", "same"]
    assert seen["maps"]["coarse"].shape == (2, 20, 20) and seen["windows"]["same"] == seen["windows"]["base"]
    assert ("Not on the baseline's grid (slice 20 across axis 2, 40×40): coarse (slice 10 across axis 2, 20×20) — "
            "each is shown on its own grid") in caption
    assert "checkerboard index was computed on its own grid, so that index is not directly comparable" in caption
