"""The per-case preview PNG: centre choice, volumes, overlay colours, odd shapes, atomic writing."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from segkit.report.preview import (
    build_preview_figure,
    class_colour,
    class_volumes_ml,
    legend_labels,
    preview_centre,
    render_preview,
    write_preview,
)

SHAPE = (40, 48, 24)
SPACING = (0.8, 1.0, 2.5)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BIG_CENTRE, SMALL_CENTRE = (14, 20, 12), (30, 34, 11)  # the axial mid-slice cuts both


def _ball(shape: tuple[int, ...], centre: tuple[int, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray]:
    """A noisy grey volume with a large class-1 ball and a small class-2 ball."""
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[_ball(SHAPE, BIG_CENTRE, 7)] = 1
    labels[_ball(SHAPE, SMALL_CENTRE, 4)] = 2
    image = np.random.default_rng(0).normal(100.0, 10.0, SHAPE).astype(np.float32) + 20.0 * labels
    return image, labels


def _decode(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_SIGNATURE)
    return imread(io.BytesIO(png), format="png")


def _panel_pixels(image: np.ndarray, labels: np.ndarray, panel: int = 0) -> np.ndarray:
    """RGB pixels (0–1) inside one panel of the drawn figure."""
    fig = build_preview_figure(image, labels, SPACING)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba(), dtype=np.float32) / 255.0
    box = fig.axes[panel].get_window_extent()
    height = rgba.shape[0]
    return rgba[int(height - box.y1) + 2 : int(height - box.y0) - 2, int(box.x0) + 2 : int(box.x1) - 2, :3]


def test_render_is_a_wide_png(case):
    image, labels = case
    pixels = _decode(render_preview(image, labels, SPACING, title="case_0001"))
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert pixels.shape[1] > 2 * pixels.shape[0]


def test_centre_is_in_the_largest_component(case):
    _, labels = case
    centre = preview_centre(labels)
    assert labels[centre] == 1
    assert np.abs(np.subtract(centre, BIG_CENTRE)).max() <= 1


def test_centre_follows_size_not_label_value():
    labels = np.zeros(SHAPE, dtype=np.int32)
    labels[_ball(SHAPE, SMALL_CENTRE, 3)] = 1
    labels[_ball(SHAPE, BIG_CENTRE, 6)] = 5
    assert labels[preview_centre(labels)] == 5


def test_centre_of_a_hollow_structure_lies_on_it():
    shell = _ball(SHAPE, (20, 24, 12), 9) & ~_ball(SHAPE, (20, 24, 12), 6)
    centre = preview_centre(shell.astype(np.uint8))
    assert shell[centre]


def test_empty_prediction_uses_the_volume_centre_and_still_renders(case):
    image, _ = case
    empty = np.zeros(SHAPE, dtype=np.uint8)
    assert preview_centre(empty) == (20, 24, 12)
    fig = build_preview_figure(image, empty, SPACING, title="case_0002")
    assert "no structure predicted" in fig.get_suptitle() and "case_0002" in fig.get_suptitle()
    assert not fig.legends
    assert _decode(render_preview(image, empty, SPACING)).shape[1] > 0


def test_class_volumes_in_ml(case):
    _, labels = case
    voxel_mm3 = 0.8 * 1.0 * 2.5
    expected = {k: int((labels == k).sum()) * voxel_mm3 / 1000.0 for k in (1, 2)}
    volumes = class_volumes_ml(labels, SPACING)
    assert volumes.keys() == {1, 2}
    for k, ml in expected.items():
        assert volumes[k] == pytest.approx(ml)
    assert class_volumes_ml(np.zeros((2, 2, 2), np.uint8), SPACING) == {}


def test_legend_names_classes_with_their_volume(case):
    image, labels = case
    ml = int((labels == 2).sum()) * 0.8 * 1.0 * 2.5 / 1000.0
    fig = build_preview_figure(image, labels, SPACING, class_names=["background", "liver"])
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[0].startswith("liver: ")
    assert texts[1] == f"class 2: {ml:.1f} ml"
    assert legend_labels({3: 0.012}, None) == {3: "class 3: 0.012 ml"}


def test_overlay_shows_the_class_colours(case):
    image, labels = case
    plain = _panel_pixels(image, np.zeros_like(labels))
    overlaid = _panel_pixels(image, labels)
    assert class_colour(1)[2] > class_colour(1)[0] and class_colour(2)[0] > class_colour(2)[2]  # blue, orange
    blueish = (overlaid[..., 2] - overlaid[..., 0]) > 0.2
    orangeish = (overlaid[..., 0] - overlaid[..., 2]) > 0.3
    assert blueish.sum() > 50 and not ((plain[..., 2] - plain[..., 0]) > 0.2).any()
    assert orangeish.sum() > 10 and not ((plain[..., 0] - plain[..., 2]) > 0.3).any()


def test_panels_keep_the_physical_aspect_ratio(case):
    image, labels = case
    fig = build_preview_figure(image, labels, SPACING)
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split(" ")[0] for t in titles] == ["axial", "coronal", "sagittal"]
    assert [ax.get_aspect() for ax in fig.axes] == pytest.approx([1.0 / 0.8, 2.5 / 0.8, 2.5 / 1.0])
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in fig.axes)


@pytest.mark.parametrize(("shape", "panel"), [((40, 48, 1), "axial"), ((1, 48, 24), "sagittal")])
def test_single_slice_volume_shows_its_one_plane(shape, panel):
    labels = np.zeros(shape, dtype=np.uint8)
    labels[_ball(shape, tuple(s // 2 for s in shape), 5)] = 1
    image = np.random.default_rng(1).normal(size=shape)
    fig = build_preview_figure(image, labels, SPACING)
    assert [ax.get_title().split(" ")[0] for ax in fig.axes] == [panel]
    assert _decode(render_preview(image, labels, SPACING)).shape[2] in (3, 4)


def test_float_labels_and_constant_image_render():
    labels = np.zeros(SHAPE, dtype=np.float64)
    labels[_ball(SHAPE, BIG_CENTRE, 5)] = 1.0
    assert _decode(render_preview(np.zeros(SHAPE, np.int16), labels, SPACING)).size > 0


def test_bad_inputs_are_rejected(case):
    image, labels = case
    with pytest.raises(ValueError, match="equal shape"):
        render_preview(image[:-1], labels, SPACING)
    with pytest.raises(ValueError, match="spacing"):
        render_preview(image, labels, (1.0, 1.0))


def test_write_is_atomic_and_replaces(tmp_path: Path, case):
    image, labels = case
    target = tmp_path / "case_0001_preview.png"
    target.write_bytes(b"old")
    write_preview(target, image, labels, SPACING, title="case_0001")
    assert target.read_bytes().startswith(PNG_SIGNATURE)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_renders_concurrently_from_threads(case):
    image, labels = case
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda t: render_preview(image, labels, SPACING, title=t), ["a", "a"]))
    assert results[0] == results[1]
    assert _decode(results[0]).shape[1] > 0


def test_a_2d_image_gets_one_panel_shown_as_viewers_show_the_file_with_pixel_counts() -> None:
    rng = np.random.default_rng(4)
    image = rng.normal(100.0, 10.0, (30, 20)).astype(np.float32)  # voxel order (x, y): 30 wide, 20 high
    labels = np.zeros((30, 20), np.uint8)
    labels[2:8, 1:4] = 1  # near the top left corner of the picture
    labels[20:25, 15:19] = 2
    fig = build_preview_figure(image, labels, (1.0, 1.0), class_names=["background", "cell"], title="slide")
    (ax,) = fig.axes
    grey, overlay = ax.images
    np.testing.assert_array_equal(grey.get_array(), image.T)  # rows = y (top → bottom), columns = x
    assert overlay.get_array()[2, 5, 3] > 0 and overlay.get_array()[5, 2, 3] == 0
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["cell: 18 px", "class 2: 20 px"]
    png = render_preview(image, labels, (1.0, 1.0), title="slide")
    assert _decode(png).shape[:2] == (450, 600)


def _panel_arrays(fig) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(ax.images[0].get_array()), np.asarray(ax.images[1].get_array())) for ax in fig.axes]


def test_with_the_affine_panels_are_anatomical_whatever_order_the_file_stores(case):
    image, labels = case  # taken as stored in LAS+ order: the display order itself
    las_affine = np.diag([-SPACING[0], SPACING[1], SPACING[2], 1.0])
    z_first = (image.transpose(2, 1, 0), labels.transpose(2, 1, 0), las_affine[:, [2, 1, 0, 3]])
    ras_affine = np.diag([*SPACING, 1.0])
    ras = (image[::-1], labels[::-1], ras_affine)  # the same anatomy stored right → left flipped
    reference = build_preview_figure(image, labels, SPACING, affine=las_affine)
    centre = preview_centre(labels)
    grey, _ = _panel_arrays(reference)[0]
    np.testing.assert_array_equal(grey, np.rot90(image[:, :, centre[2]].astype(np.float32)))  # axis 0 (→ L) across
    for stored_image, stored_labels, affine in (z_first, ras):
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        fig = build_preview_figure(stored_image, stored_labels, spacing, affine=affine)
        for (want_grey, want_overlay), (got_grey, got_overlay) in zip(_panel_arrays(reference), _panel_arrays(fig),
                                                                      strict=True):
            np.testing.assert_array_equal(got_grey, want_grey)
            np.testing.assert_array_equal(got_overlay, want_overlay)
        assert [ax.get_aspect() for ax in fig.axes] == pytest.approx([ax.get_aspect() for ax in reference.axes])
    titles = [ax.get_title() for ax in build_preview_figure(*z_first[:2], SPACING[::-1], affine=z_first[2]).axes]
    assert titles == [f"axial · axis 0, slice {centre[2]}/23", f"coronal · axis 1, slice {centre[1]}/47",
                      f"sagittal · axis 2, slice {centre[0]}/39"]
    flipped = [ax.get_title() for ax in build_preview_figure(*ras[:2], SPACING, affine=ras[2]).axes]
    assert flipped[2] == f"sagittal · axis 0, slice {39 - centre[0]}/39"
    assert [sorted(t.get_text() for t in ax.texts) for ax in reference.axes] == [
        ["A", "L", "P", "R"], ["I", "L", "R", "S"], ["A", "I", "P", "S"]]
    assert not build_preview_figure(image, labels, SPACING).axes[0].texts  # stored order: no letters
