"""Where the report's panels look: the centre of a case's reference foreground, in voxels and in world mm.

Both panels pass through the same anatomical point: the qualitative panel on the input grid (label maps as
written), the artefact panel on the network's grid (the preprocessed image the logits live on), the point
carried between the two by their affines (both RAS, as nibabel and MONAI give them). Both are turned into
``segkit predict --preview``'s display order (``segkit.report.preview.DISPLAY_AXES``), never resampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation

from segkit.config import Config
from segkit.io.image_io import read_label_array
from segkit.report.preview import display_order, view_name


@dataclass(frozen=True)
class Centre:
    """The centroid of a reference label map's foreground (the array centre when it has none)."""

    voxel: np.ndarray  # (ndim,) in the label file's voxel order
    world: np.ndarray  # (3,) RAS mm, or the voxel position for 2D files


def foreground_centre(label_path: Path) -> Centre:
    """The centre of mass of all foreground voxels (label > 0) of the reference ``label_path``."""
    labels, affine = read_label_array(label_path)
    found = np.argwhere(labels > 0)
    voxel = found.mean(axis=0) if len(found) else (np.asarray(labels.shape, dtype=float) - 1) / 2
    if labels.ndim != 3:
        return Centre(voxel, voxel)
    return Centre(voxel, (affine @ np.append(voxel, 1.0))[:3])


def slice_axis(cfg: Config) -> int | None:
    """The axis the panels cut across: the slice axis of a 2D model on volumes, the last axis in 3D, none for
    2D image files."""
    if cfg.data.image_dims == 2:
        return None
    return cfg.data.slice_axis if cfg.slices_volumes else 2


def index_on_grid(world: np.ndarray, affine: np.ndarray, axis: int, length: int) -> int:
    """The voxel index along ``axis`` of the grid with ``affine`` nearest to the ``world`` point, clipped."""
    voxel = np.linalg.solve(np.asarray(affine, dtype=np.float64), np.append(world, 1.0))[:3]
    return int(np.clip(np.rint(voxel[axis]), 0, length - 1))


def network_axes(cfg: Config) -> tuple[int, ...]:
    """The spatial axes of the logits the network convolves along (a 2D model on volumes: not the slice axis)."""
    dims = 2 if cfg.data.image_dims == 2 else 3
    return tuple(a for a in range(dims) if not (cfg.slices_volumes and a == cfg.data.slice_axis))


def display_plane(logits: np.ndarray, affine: np.ndarray, axis: int, index: int) -> tuple[np.ndarray, str | None]:
    """Slice ``index`` across ``axis`` of the logits ``(K, X, Y, Z)`` of a grid with ``affine``, its two axes
    permuted and flipped into the preview's display order (so that ``np.rot90`` shows an axial slice with the
    patient's right on the left and anterior up), and the view's name; the slice as stored and None when the
    affine's axes cannot be told apart."""
    plane = np.moveaxis(np.take(logits, [index], axis=axis + 1), 0, -1)  # (X, Y, Z, K), ``axis`` of length 1
    transform = display_order(affine)
    if transform is None:
        return np.moveaxis(plane.squeeze(axis), -1, 0), None
    shown_axis = int(transform[axis, 0])
    return np.moveaxis(apply_orientation(plane, transform).squeeze(shown_axis), -1, 0), view_name(shown_axis)
