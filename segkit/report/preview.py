"""One PNG per predicted case: three orthogonal mid-slices with the label overlay and a legend.

The slices pass through a voxel of the largest connected foreground structure (any label > 0), so a
preview shows the prediction, not empty background. Rendering uses ``matplotlib.figure.Figure`` with
the Agg canvas only — never ``pyplot`` — so it keeps no global state and is safe in writer threads.
A 2D image (PNG or TIFF, ``data.image_dims: 2``) gets one panel instead, shown as image viewers show the file.

Display orientation (all panels): each slice is turned with ``np.rot90``, so the *first* remaining
array axis runs left → right and the *second* runs bottom → top (higher index up):

* axial (perpendicular to axis 2): axis 0 left → right, axis 1 up;
* coronal (perpendicular to axis 1): axis 0 left → right, axis 2 up;
* sagittal (perpendicular to axis 0): axis 1 left → right, axis 2 up.

Given the voxel-to-world ``affine``, the arrays are first permuted and flipped (never resampled) to the voxel
order closest to LAS+ (``nibabel.orientations``), whatever order the file stores: the axial panel then shows
the patient's right on the screen's left (the radiological convention of ITK-SNAP and 3D Slicer) with anterior
up, the coronal and sagittal panels show superior up, and letters (R/L, A/P, S/I) mark each edge. Panel
titles give the slice in the file's own voxel order (``axis k, slice i/last``), to find it in a viewer.
Without an affine the panels follow the stored array order and carry no letters.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform
from scipy import ndimage

from segkit.io.atomic import atomic_write_bytes

OVERLAY_ALPHA = 0.45
DPI = 100
FIG_HEIGHT_IN = 4.5
FIG_WIDTH_IN = {1: 6.0, 2: 9.0, 3: 12.0}  # by number of panels shown
PANELS = ((2, "axial"), (1, "coronal"), (0, "sagittal"))  # (axis the slice is perpendicular to, name)
NO_STRUCTURE = "no structure predicted"
_PERCENTILE_SAMPLE = 2_000_000  # voxels used to estimate the grey window
DISPLAY_AXES = "LAS"  # voxel order the panels are drawn in when the affine is known (radiological convention)
EDGE_LETTERS = {  # (left, right, bottom, top) of each panel in DISPLAY_AXES order
    "axial": ("R", "L", "P", "A"), "coronal": ("R", "L", "I", "S"), "sagittal": ("P", "A", "I", "S")}
_EDGE_WORDS = {"R": "the patient's right", "L": "the patient's left", "A": "anterior", "P": "posterior",
               "S": "superior", "I": "inferior"}


def class_colour(k: int) -> tuple[float, float, float]:
    """The fixed display colour of class ``k`` (≥ 1): tab10 for 1–10, then tab20's light shades, then cycling."""
    if k <= 10:
        return tuple(colormaps["tab10"].colors[(k - 1) % 10])
    return tuple(colormaps["tab20"].colors[(2 * (k - 11) + 1) % 20])


def _as_label_map(labels: np.ndarray) -> np.ndarray:
    """Integer labels without copying integer input; float maps (e.g. nibabel's ``get_fdata``) are rounded."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":
        return np.rint(labels).astype(np.int64)
    if labels.dtype.kind == "b":
        return labels.view(np.uint8)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer label map, got dtype {labels.dtype}")
    return labels


def _volume_centre(shape: Sequence[int]) -> tuple[int, int, int]:
    return tuple(int(s // 2) for s in shape)


def preview_centre(labels: np.ndarray) -> tuple[int, int, int]:
    """The voxel the three preview slices pass through.

    The centroid (``scipy.ndimage.center_of_mass``) of the largest connected component of foreground
    (label > 0, face connectivity), rounded; if the rounded centroid lies outside the component (a
    curved or hollow structure) the nearest voxel of the component is used instead, so every slice
    cuts the structure. Without foreground: the volume centre ``(s // 2 for s in shape)``.
    """
    labels = _as_label_map(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be 3D, got shape {labels.shape}")
    foreground = labels > 0
    boxes = ndimage.find_objects(foreground.view(np.uint8))
    if not boxes:
        return _volume_centre(labels.shape)
    components, _ = ndimage.label(foreground[boxes[0]])  # labelling only the foreground's bounding box
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    box = ndimage.find_objects(components, max_label=largest)[largest - 1]
    inside = components[box] == largest
    offset = np.array([a.start + b.start for a, b in zip(boxes[0], box, strict=True)])
    centroid = np.asarray(ndimage.center_of_mass(inside))
    centre = np.clip(np.rint(centroid).astype(np.int64), 0, np.asarray(inside.shape) - 1)
    if not inside[tuple(centre)]:
        voxels = np.argwhere(inside)
        centre = voxels[np.argmin(((voxels - centroid) ** 2).sum(axis=1))]
    return tuple(int(c) for c in centre + offset)


def class_volumes_ml(labels: np.ndarray, spacing: Sequence[float]) -> dict[int, float]:
    """Volume in ml of every class > 0 present in ``labels``: voxel count × voxel volume (mm³) / 1000."""
    labels = _as_label_map(labels)
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    foreground = labels[labels > 0].astype(np.int64)
    counts = np.bincount(foreground) if foreground.size else np.zeros(1, np.int64)
    return {int(k): float(n) * voxel_ml for k, n in enumerate(counts) if k > 0 and n > 0}


def format_ml(ml: float) -> str:
    """A volume for the legend: one decimal, more significant digits below 0.1 ml."""
    return f"{ml:.1f} ml" if ml >= 0.1 or ml == 0 else f"{ml:.2g} ml"


def legend_labels(volumes: dict[int, float], class_names: Sequence[str] | None = None) -> dict[int, str]:
    """Legend text per class: its name (``class_names[k]``, index 0 = background, else ``"class k"``) and volume."""
    names = list(class_names) if class_names is not None else []
    return {k: f"{names[k] if k < len(names) else f'class {k}'}: {format_ml(ml)}" for k, ml in sorted(volumes.items())}


def _grey_window(image: np.ndarray) -> tuple[float, float]:
    values = image.ravel()
    if values.size > _PERCENTILE_SAMPLE:
        values = values[:: values.size // _PERCENTILE_SAMPLE + 1]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [1, 99]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _oriented_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.rot90(np.take(volume, index, axis=axis))


def _overlay_rgba(label_slice: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    rgba = np.zeros((*label_slice.shape, 4), dtype=np.float32)
    for k in classes:
        rgba[label_slice == k] = (*class_colour(k), OVERLAY_ALPHA)
    return rgba


def _draw_panel(ax: Axes, grey: np.ndarray, lab: np.ndarray, window: tuple[float, float], aspect: float,
                classes: Sequence[int]) -> None:
    ax.imshow(grey, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect, interpolation="antialiased")
    ax.imshow(_overlay_rgba(lab, classes), aspect=aspect, interpolation="nearest")
    if min(lab.shape) >= 2:
        for k in classes:
            mask = lab == k
            if mask.any() and not mask.all():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors=[class_colour(k)], linewidths=1.0)
    ax.set_xlim(-0.5, grey.shape[1] - 0.5)
    ax.set_ylim(grey.shape[0] - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_anchor("N")  # panels of different aspect ratios share their top edge, so the titles line up


def _panels_to_show(shape: Sequence[int]) -> list[tuple[int, str]]:
    """Panels whose slice is a real 2D image; a volume with a size-1 axis shows just its one slice plane."""
    proper = [(axis, name) for axis, name in PANELS if all(shape[a] > 1 for a in range(3) if a != axis)]
    return proper or list(PANELS)


def _check_inputs(image: np.ndarray, labels: np.ndarray, spacing: Sequence[float]) -> tuple[float, ...]:
    if image.ndim not in (2, 3) or labels.shape != image.shape:
        raise ValueError(f"image and labels must be 2D or 3D of equal shape, got {image.shape} and {labels.shape}")
    if image.size == 0:
        raise ValueError("cannot preview an empty image")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != image.ndim or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be {image.ndim} positive sizes in mm, got {spacing}")
    return spacing


def pixel_counts(labels: np.ndarray) -> dict[int, int]:
    """Pixels of every class > 0 present in a 2D label map (the legend of a 2D preview: plain 2D formats carry no
    physical pixel size)."""
    labels = _as_label_map(labels)
    foreground = labels[labels > 0].astype(np.int64)
    counts = np.bincount(foreground) if foreground.size else np.zeros(1, np.int64)
    return {int(k): int(n) for k, n in enumerate(counts) if k > 0 and n > 0}


def _add_legend(fig: Figure, volumes: dict[int, float], class_names: Sequence[str] | None,
                planar: bool = False) -> None:
    names = list(class_names) if class_names is not None else []
    texts = ({k: f"{names[k] if k < len(names) else f'class {k}'}: {int(n)} px" for k, n in sorted(volumes.items())}
             if planar else legend_labels(volumes, class_names))
    handles = [Patch(facecolor=class_colour(k), edgecolor="black", linewidth=0.5, label=t) for k, t in texts.items()]
    fig.legend(handles=handles, loc="outside right upper", ncols=1 if len(handles) <= 14 else 2, fontsize=9,
               frameon=False, handlelength=1.2)


def display_order(affine: np.ndarray | None) -> np.ndarray | None:
    """``nibabel`` orientation transform from the file's voxel order to ``DISPLAY_AXES`` (rows: file axis →
    (display axis, ±1)); None without an affine or for one whose axes cannot be told apart."""
    if affine is None:
        return None
    orientation = io_orientation(np.asarray(affine, dtype=np.float64))
    if np.isnan(orientation).any():
        return None
    return ornt_transform(orientation, axcodes2ornt(DISPLAY_AXES))


def view_name(display_axis: int) -> str:
    """The name of the panel perpendicular to ``display_axis`` of ``DISPLAY_AXES`` (2: ``"axial"``)."""
    return dict(PANELS)[display_axis]


def view_text(name: str) -> str:
    """How the panel ``name`` is turned, in words: ``"the patient's right on the left, anterior up"``."""
    left, _, _, top = EDGE_LETTERS[name]
    return f"{_EDGE_WORDS[left]} on the left, {_EDGE_WORDS[top]} up"


def _file_axis(transform: np.ndarray, axis: int) -> int:
    """The file's voxel axis that display ``axis`` shows."""
    return int(np.flatnonzero(transform[:, 0] == axis)[0])


def file_slice(transform: np.ndarray | None, shape: Sequence[int], axis: int, index: int) -> tuple[int, int]:
    """The file's voxel axis and index of display ``axis`` at ``index``."""
    if transform is None:
        return axis, index
    file_axis = _file_axis(transform, axis)
    return file_axis, index if transform[file_axis, 1] > 0 else shape[axis] - 1 - index


def display_index(transform: np.ndarray | None, shape: Sequence[int], voxel: Sequence[float], axis: int) -> int:
    """The index along display ``axis`` of the file's ``voxel`` (a file of ``shape``), rounded."""
    if transform is None:
        return int(np.rint(voxel[axis]))
    file_axis = _file_axis(transform, axis)
    index = int(np.rint(voxel[file_axis]))
    return index if transform[file_axis, 1] > 0 else shape[file_axis] - 1 - index


def _mark_edges(ax: Axes, name: str) -> None:
    left, right, bottom, top = EDGE_LETTERS[name]
    style = {"transform": ax.transAxes, "color": "yellow", "fontsize": 9, "fontweight": "bold"}
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)


def build_preview_figure(image: np.ndarray, labels: np.ndarray, spacing: Sequence[float],
                         class_names: Sequence[str] | None = None, title: str = "",
                         affine: np.ndarray | None = None) -> Figure:
    """The preview as a ``Figure`` (Agg canvas attached); see ``render_preview`` for the arguments."""
    image = np.asarray(image, dtype=np.float32)
    labels = _as_label_map(labels)
    spacing = _check_inputs(image, labels, spacing)
    if image.ndim == 2:
        return _planar_figure(image, labels, spacing, class_names, title)
    volumes = class_volumes_ml(labels, spacing)
    transform = display_order(affine)
    if transform is not None:
        image, labels = apply_orientation(image, transform), apply_orientation(labels, transform)
        spacing = tuple(spacing[_file_axis(transform, axis)] for axis in range(3))
    centre, classes, window = preview_centre(labels), sorted(volumes), _grey_window(image)
    panels = _panels_to_show(image.shape)
    fig = Figure(figsize=(FIG_WIDTH_IN[len(panels)], FIG_HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (axis, name) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        across, up = (a for a in range(3) if a != axis)
        grey = _oriented_slice(image, axis, centre[axis])
        lab = _oriented_slice(labels, axis, centre[axis])
        _draw_panel(ax, grey, lab, window, spacing[up] / spacing[across], classes)
        file_axis, index = file_slice(transform, image.shape, axis, centre[axis])
        ax.set_title(f"{name} · axis {file_axis}, slice {index}/{image.shape[axis] - 1}", fontsize=10)
        if transform is not None:
            _mark_edges(ax, name)
    _finish_figure(fig, volumes, class_names, title)
    return fig


def _finish_figure(fig: Figure, volumes: dict[int, float], class_names: Sequence[str] | None, title: str,
                   planar: bool = False) -> None:
    """The legend (when anything is predicted) and the title."""
    if volumes:
        _add_legend(fig, volumes, class_names, planar)
    suptitle = title if volumes else " — ".join(t for t in (title, NO_STRUCTURE) if t)
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)


def _planar_figure(image: np.ndarray, labels: np.ndarray, spacing: tuple[float, ...],
                   class_names: Sequence[str] | None, title: str) -> Figure:
    """One panel for a 2D image in voxel order (x, y): shown as image viewers show the file, x (axis 0) left →
    right and y (axis 1) top → bottom, i.e. the array's transpose (rows, columns) with row 0 at the top."""
    counts = pixel_counts(labels)
    fig = Figure(figsize=(FIG_WIDTH_IN[1], FIG_HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, 1)
    _draw_panel(ax, image.T, labels.T, _grey_window(image), spacing[1] / spacing[0], sorted(counts))
    ax.set_title(f"2D image · {image.shape[0]}×{image.shape[1]} px", fontsize=10)
    _finish_figure(fig, counts, class_names, title, planar=True)
    return fig


def render_preview(image: np.ndarray, labels: np.ndarray, spacing: Sequence[float],
                   class_names: Sequence[str] | None = None, title: str = "", affine: np.ndarray | None = None
                   ) -> bytes:
    """Render one case's preview and return it as PNG bytes.

    Args:
        image: 3D grey volume (first input channel) in the same voxel order (i, j, k) as ``labels``, or a 2D
            grey image in voxel order (x, y) (as SimpleITK's array of a PNG, transposed).
        labels: integer label map of the same shape; 0 is background.
        spacing: voxel size in mm along each axis (sets the panels' aspect ratios).
        class_names: names by class index, background at index 0; missing names read ``"class k"``.
        title: figure title; ``"no structure predicted"`` is appended when ``labels`` has no foreground.
        affine: the volume's 4×4 voxel-to-world affine; when given, the panels are drawn in anatomical
            orientation whatever the stored voxel order (see the module docstring), with edge letters.

    Three panels (axial, coronal, sagittal; see the module docstring for which way is up) through
    ``preview_centre(labels)``, titled ``"axial · axis 2, slice k/last"`` (the file's voxel axis and 0-based
    index), grey windowed at the volume's 1st–99th percentile, each class as a 45 % opaque ``class_colour`` fill
    with a contour line; a legend lists each class present with its volume in ml. A volume with a
    size-1 axis shows only its single slice plane. About 1200×450 px. A 2D image gets one panel (x left → right,
    y top → bottom, as viewers show the file) whose legend gives each class's pixel count; about 600×450 px.
    """
    fig = build_preview_figure(image, labels, spacing, class_names, title, affine)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def write_preview(path: Path, image: np.ndarray, labels: np.ndarray, spacing: Sequence[float],
                  class_names: Sequence[str] | None = None, title: str = "", affine: np.ndarray | None = None
                  ) -> None:
    """Render the preview (see ``render_preview``) and write it to ``path`` atomically."""
    atomic_write_bytes(Path(path), render_preview(image, labels, spacing, class_names, title, affine))
