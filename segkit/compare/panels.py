"""Image panels: one held-out slice with the reference and each variant's contours, and each variant's logit
map on a zoomed region (raw, and with its 3×3 local mean removed so that period-2 patterns stand out).

Slices are shown with ``np.rot90``: the first array axis runs left → right, the second bottom → top. Both the
qualitative slice and the logit maps come in ``segkit predict --preview``'s display order (``segkit.compare.slices``:
an axial slice shows the patient's right on the left, anterior up). Label maps are drawn as closed outlines plus a
translucent tint (``segkit/compare/outlines.py``), so a label that fills the whole slice or touches its edge stays
visible.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from scipy import ndimage

from segkit.compare.figures import to_png
from segkit.compare.outlines import outlines, tint
from segkit.report.preview import class_colour

ZOOM = 48  # voxels per side of the artefact panel's window


def _grey_window(image: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
    return float(low), float(max(high, low + 1e-6))


def _contours(ax, labels: np.ndarray, linestyle: str = "solid", width: float = 1.4, colour=None) -> None:
    for k, lines in outlines(labels).items():
        for line in lines:
            ax.plot(line[:, 0], line[:, 1], color=colour or class_colour(k), linewidth=width, linestyle=linestyle)


def _slice_axes(ax, image: np.ndarray, window: tuple[float, float]) -> None:
    """The grey slice, with one pixel of margin so that outlines along the image edge are not cut in half."""
    shown = np.rot90(image)
    ax.imshow(shown, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
    ax.set_xlim(-1.0, shown.shape[1])
    ax.set_ylim(shown.shape[0], -1.0)


def qualitative_figure(image: np.ndarray, reference: np.ndarray, predictions: dict[str, np.ndarray],
                       class_names: list[str], title: str) -> bytes:
    """Reference contours, then one panel per variant with its labels (tinted, solid contours) over the reference
    (dashed white); all 2D arrays of one slice on the input grid."""
    panels = [("reference", reference), *predictions.items()]
    figure = Figure(figsize=(2.8 * len(panels), 3.4))
    window = _grey_window(image)
    for i, (name, labels) in enumerate(panels):
        ax = figure.add_subplot(1, len(panels), i + 1)
        _slice_axes(ax, image, window)
        ax.imshow(tint(labels), interpolation="nearest")
        if i > 0:
            _contours(ax, reference, "dashed", 0.9, "white")
        _contours(ax, labels)
        ax.set_title(name, fontsize="medium")
        ax.set_axis_off()
    handles = [ax.plot([], [], color=class_colour(k), label=n)[0] for k, n in enumerate(class_names, start=1)]
    handles.append(ax.plot([], [], color="white", linestyle="dashed", label="reference")[0])
    figure.legend(handles=handles, loc="lower center", ncols=len(handles), fontsize="small", facecolor="0.85")
    figure.suptitle(title, fontsize="medium")
    figure.subplots_adjust(bottom=0.14, wspace=0.04)
    return to_png(figure)


def foreground_margin(logits: np.ndarray) -> np.ndarray:
    """Largest foreground logit minus the background logit, per pixel of ``logits`` (K, rows, cols)."""
    return logits[1:].max(axis=0) - logits[0]


def zoom_window(margin: np.ndarray, size: int = ZOOM) -> tuple[slice, slice]:
    """A ``size``² window centred on the top edge of the foreground (margin > 0) as shown (``np.rot90``: the highest
    index along the second axis), so that inside and outside both show."""
    rows, cols = margin.shape
    found = np.argwhere(margin > 0)
    centre = (rows // 2, cols // 2)
    if len(found):
        top = found[:, 1].max()
        centre = (int(np.median(found[found[:, 1] == top, 0])), int(top))
    starts = [int(np.clip(c - size // 2, 0, max(n - size, 0))) for c, n in zip(centre, (rows, cols), strict=True)]
    return slice(starts[0], starts[0] + size), slice(starts[1], starts[1] + size)


def _show_map(figure: Figure, position: int, columns: int, values: np.ndarray, title: str | None,
              row_label: str | None) -> None:
    ax = figure.add_subplot(2, columns, position)
    limit = float(np.percentile(np.abs(values), 99)) or 1.0
    shown = ax.imshow(np.rot90(values), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    bar = figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, ticks=[-limit, 0.0, limit], format="%.2g")
    bar.ax.tick_params(labelsize="x-small")
    if title:
        ax.set_title(title, fontsize="small")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.spines[:].set_visible(False)
    if row_label:
        ax.set_ylabel(row_label, fontsize="small")


def artefact_figure(maps: dict[str, np.ndarray], titles: dict[str, str],
                    windows: dict[str, tuple[slice, slice]]) -> bytes:
    """Top row: each variant's foreground margin (logits of one slice, in its window); bottom row: the same minus
    its 3×3 local mean (high-pass), where a checkerboard shows as a regular ± texture."""
    return to_png(artefact_maps(maps, titles, windows))


def artefact_maps(maps: dict[str, np.ndarray], titles: dict[str, str],
                  windows: dict[str, tuple[slice, slice]]) -> Figure:
    """:func:`artefact_figure` as a ``Figure``."""
    figure = Figure(figsize=(3.2 * len(maps), 6.0), layout="constrained")  # keeps colour-bar ticks off the next map
    for i, (label, logits) in enumerate(maps.items()):
        margin = foreground_margin(logits)[windows[label]]
        first = i == 0
        _show_map(figure, i + 1, len(maps), margin, titles.get(label, label), "logit margin" if first else None)
        _show_map(figure, len(maps) + i + 1, len(maps), margin - ndimage.uniform_filter(margin, 3, mode="nearest"),
                  None, "minus its 3×3 mean" if first else None)
    return figure
