"""Reading what the image panels show (one held-out case, each variant's lowest-seed run) and their report blocks.

A run records its panel case in ``result.json`` (``panel``: case id, image and label files, its prediction
relative to the run folder) and keeps one slice of its logits in ``panel.npz``. When the files cannot be read
(e.g. ``--report-only`` on another machine) the section says so instead of failing the report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segkit.compare import document as doc
from segkit.compare.measure import PANEL, load_panel
from segkit.compare.panels import ZOOM, artefact_figure, foreground_margin, qualitative_figure, zoom_window
from segkit.compare.results import RunResult
from segkit.compare.slices import foreground_centre
from segkit.errors import SegkitError
from segkit.io.image_io import read_image_array, read_label_array


def _first_seeds(groups: dict[str, list[RunResult]]) -> dict[str, RunResult]:
    return {label: min(found, key=lambda r: r.seed) for label, found in groups.items()}


def _qualitative_image(runs: dict[str, RunResult], baseline: str) -> doc.Image:
    info = runs[baseline].data["panel"]
    centre = foreground_centre(Path(info["label"]))
    image, _ = read_image_array(Path(info["image"]))
    reference, _ = read_label_array(Path(info["label"]))
    predictions = {label: read_label_array(run.folder / run.data["panel"]["prediction"])[0]
                   for label, run in runs.items()}
    where = "the whole image"
    if reference.ndim == 3:
        index = int(np.rint(centre.voxel[2]))
        image, reference = image[:, :, index], reference[:, :, index]
        predictions = {label: labels[:, :, index] for label, labels in predictions.items()}
        where = f"slice {index} along the file's third axis, through the centre of the reference foreground"
    seed = runs[baseline].seed
    png = qualitative_figure(image, reference, predictions, runs[baseline].data["classes"],
                             f"{info['case_id']}: {where}")
    caption = (f"Held-out case {info['case_id']}, {where} (seed {seed} of each variant). The first panel shows the "
               "reference; each other panel shows one variant's prediction (tinted, with solid contours, one colour "
               "per class) over the reference contours (dashed white). A label reaching the edge of the slice is "
               "outlined along the edge. Gaps between solid and dashed lines are segmentation errors; ragged or "
               "stair-stepped solid lines point at upsampling artefacts.")
    return doc.Image("qualitative.png", png, "qualitative comparison", caption)


def qualitative_blocks(groups: dict[str, list[RunResult]], baseline: str) -> list[doc.Block]:
    """The contour panel, or a note saying why it is missing."""
    blocks: list[doc.Block] = [doc.Heading("Qualitative: one held-out slice")]
    try:
        return [*blocks, _qualitative_image(_first_seeds(groups), baseline)]
    except (SegkitError, OSError, KeyError, IndexError, ValueError) as exc:
        return [*blocks, doc.Paragraph(f"Not available: the case's files could not be read ({exc}).")]


def artefact_blocks(groups: dict[str, list[RunResult]], baseline: str) -> list[doc.Block]:
    """The zoomed logit maps, or a note saying why they are missing."""
    blocks: list[doc.Block] = [doc.Heading("Artefacts: logits on a zoomed region")]
    runs = _first_seeds(groups)
    panels = {label: load_panel(run.folder / PANEL) for label, run in runs.items()}
    base = panels.get(baseline)
    if base is None:
        return [*blocks, doc.Paragraph(f"Not available: no readable {PANEL} in the baseline's run.")]
    maps = {label: p.logits for label, p in panels.items() if p is not None and p.logits.shape == base.logits.shape}
    window = zoom_window(foreground_margin(base.logits))
    titles = {label: f"{label}\ncheckerboard {runs[label].value('checkerboard_index'):.2g}" for label in maps}
    where = "the whole image" if base.axis is None else f"slice {base.index} across axis {base.axis}"
    caption = (f"Held-out case {base.case_id}, {where} of the network's grid, a {ZOOM}×{ZOOM}-voxel window straddling "
               f"the top edge of the baseline's foreground (seed {runs[baseline].seed} of each variant). Top: the "
               "logit margin (largest foreground logit minus background logit; red is foreground, blue background, "
               "each panel scaled to its own range). Bottom: the same minus its 3×3 local mean, where a "
               "checkerboard artefact shows as a regular alternating ± texture and a smooth map as faint noise. "
               "Titles give the run's checkerboard index (mean over held-out volumes).")
    return [*blocks, doc.Image("artefacts.png", artefact_figure(maps, titles, window), "logit artefacts", caption)]
