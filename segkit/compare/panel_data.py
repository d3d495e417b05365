"""Reading what the image panels show (one held-out case; the baseline's lowest seed for every variant when all
finished it, else each variant's own lowest seed, named in its title) and their report blocks.

A run records its panel case in ``result.json`` (``panel``: case id, image and label files, its prediction
relative to the run folder) and keeps one slice of its logits in ``panel.npz``. When the files cannot be read
(e.g. ``--report-only`` on another machine) the section says so instead of failing the report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation

from segkit.compare import document as doc
from segkit.compare.measure import PANEL, PanelSlice, load_panel
from segkit.compare.panels import ZOOM, artefact_figure, foreground_margin, qualitative_figure, zoom_window
from segkit.compare.results import RunResult
from segkit.compare.slices import foreground_centre
from segkit.errors import SegkitError
from segkit.io.image_io import read_image_array, read_label_array
from segkit.report.preview import display_index, display_order, file_slice, view_text


def panel_runs(groups: dict[str, list[RunResult]], baseline: str) -> tuple[dict[str, RunResult], int | None]:
    """The run each variant's panel shows, and the seed they share: the baseline's lowest seed when every variant
    finished it, else None and each variant's own lowest seed (its panel is then captioned with it)."""
    lowest = {label: min(found, key=lambda r: r.seed) for label, found in groups.items()}
    if baseline not in lowest:
        return lowest, None
    seed = lowest[baseline].seed
    shared = {label: next((r for r in found if r.seed == seed), None) for label, found in groups.items()}
    if all(run is not None for run in shared.values()):
        return shared, seed
    return lowest, None


def _panel_titles(runs: dict[str, RunResult], seed: int | None) -> dict[str, str]:
    """Each variant's panel title: its label, and its seed when the panels do not share one."""
    return {label: label if seed is not None else f"{label} (seed {run.seed})" for label, run in runs.items()}


def _seed_text(seed: int | None) -> str:
    if seed is None:
        return "each variant's lowest finished seed, named in its title"
    return f"seed {seed} of each variant"


def _axial_slices(volumes: list[np.ndarray], affine: np.ndarray, voxel) -> tuple[list[np.ndarray], str]:
    """The axial slice through the file's ``voxel`` of each volume, as ``segkit predict --preview`` shows it
    (``DISPLAY_AXES``, whatever order the file stores), and where it lies in the file."""
    transform = display_order(affine)
    index = display_index(transform, volumes[0].shape, voxel, 2)
    if transform is not None:
        volumes = [apply_orientation(volume, transform) for volume in volumes]
    file_axis, file_index = file_slice(transform, volumes[0].shape, 2, index)
    where = (f"axial slice {file_index} along the file's axis {file_axis} ({view_text('axial')}), "
             "through the centre of the reference foreground")
    return [volume[:, :, index] for volume in volumes], where


def _qualitative_image(runs: dict[str, RunResult], baseline: str, seed: int | None) -> doc.Image:
    info = runs[baseline].data["panel"]
    centre = foreground_centre(Path(info["label"]))
    image, _ = read_image_array(Path(info["image"]))
    reference, affine = read_label_array(Path(info["label"]))
    titles = _panel_titles(runs, seed)
    predictions = {titles[label]: read_label_array(run.folder / run.data["panel"]["prediction"])[0]
                   for label, run in runs.items()}
    where = "the whole image"
    if reference.ndim == 3:
        (image, reference, *shown), where = _axial_slices([image, reference, *predictions.values()], affine,
                                                          centre.voxel)
        predictions = dict(zip(predictions, shown, strict=True))
    png = qualitative_figure(image, reference, predictions, runs[baseline].data["classes"],
                             f"{info['case_id']}: {where}")
    caption = (f"Held-out case {doc.literal(info['case_id'])}, {where} ({_seed_text(seed)}). The first panel shows the "
               "reference; each other panel shows one variant's prediction (tinted, with solid contours, one colour "
               "per class) over the reference contours (dashed white). A label reaching the edge of the slice is "
               "outlined along the edge. Gaps between solid and dashed lines are segmentation errors; ragged or "
               "stair-stepped solid lines point at upsampling artefacts.")
    return doc.Image("qualitative.png", png, "qualitative comparison", caption)


def qualitative_blocks(groups: dict[str, list[RunResult]], baseline: str) -> list[doc.Block]:
    """The contour panel, or a note saying why it is missing."""
    blocks: list[doc.Block] = [doc.Heading("Qualitative: one held-out slice")]
    runs, seed = panel_runs(groups, baseline)
    try:
        return [*blocks, _qualitative_image(runs, baseline, seed)]
    except (SegkitError, OSError, KeyError, IndexError, ValueError) as exc:
        return [*blocks, doc.Paragraph(f"Not available: the case's files could not be read ({exc}).")]


def _grid_text(panel: PanelSlice) -> str:
    size = "×".join(map(str, panel.logits.shape[1:]))
    return f"a {size} slice" if panel.axis is None else f"slice {panel.index} across axis {panel.axis}, {size}"


def _where_text(panel: PanelSlice) -> str:
    """Which slice of the network's grid the baseline's maps show, and how it is turned."""
    if panel.axis is None:
        return "the whole image of the network's grid"
    where = f"slice {panel.index} across axis {panel.axis} of the network's grid"
    if panel.view is None:
        return f"{where}, as stored (its first axis left to right, its second up)"
    return f"{panel.view} {where}, shown with {view_text(panel.view)}"


def _left_out_text(panels: dict[str, PanelSlice | None], base: PanelSlice) -> str:
    """What the caption says about variants on another grid than the baseline's, and about missing panels."""
    other = [f"{doc.literal(label)} ({_grid_text(p)})" for label, p in panels.items()
             if p is not None and p.logits.shape != base.logits.shape]
    missing = [label for label, p in panels.items() if p is None]
    text = ""
    if other:
        text += (f" Not on the baseline's grid ({_grid_text(base)}): {'; '.join(other)} — each is shown on its own "
                 "grid, its window at its own foreground's top edge, and its checkerboard index was computed on its "
                 "own grid, so that index is not directly comparable with the others' (in the summary table too).")
    if missing:
        text += f" Left out, no readable {PANEL} in their run: {doc.literal(', '.join(missing))}."
    return text


def artefact_blocks(groups: dict[str, list[RunResult]], baseline: str) -> list[doc.Block]:
    """The zoomed logit maps, or a note saying why they are missing."""
    blocks: list[doc.Block] = [doc.Heading("Artefacts: logits on a zoomed region")]
    runs, seed = panel_runs(groups, baseline)
    panels = {label: load_panel(run.folder / PANEL) for label, run in runs.items()}
    base = panels.get(baseline)
    if base is None:
        return [*blocks, doc.Paragraph(f"Not available: no readable {PANEL} in the baseline's run.")]
    maps = {label: p.logits for label, p in panels.items() if p is not None}
    base_window = zoom_window(foreground_margin(base.logits))
    windows = {label: base_window if m.shape == base.logits.shape else zoom_window(foreground_margin(m))
               for label, m in maps.items()}
    names = _panel_titles(runs, seed)
    titles = {label: f"{names[label]}\ncheckerboard {runs[label].value('checkerboard_index'):.2g}" for label in maps}
    caption = (f"Held-out case {doc.literal(base.case_id)}, {_where_text(base)}: a {ZOOM}×{ZOOM}-voxel "
               f"window centred on the top edge of the baseline's foreground ({_seed_text(seed)}). Top: the "
               "logit margin (largest foreground logit minus background logit; red is foreground, blue background, "
               "each panel scaled to its own range). Bottom: the same minus its 3×3 local mean, where a "
               "checkerboard artefact shows as a regular alternating ± texture and a smooth map as faint noise. "
               "Titles give the run's checkerboard index (mean over held-out volumes)." + _left_out_text(panels, base))
    png = artefact_figure(maps, titles, windows)
    return [*blocks, doc.Image("artefacts.png", png, "logit artefacts", caption)]
