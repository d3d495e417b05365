"""Resampling volumes between voxel grids given their affines, in torch (GPU when present)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F


def _index_to_normalised(shape: Sequence[int]) -> np.ndarray:
    """Voxel index → grid_sample coordinate in [-1, 1] (align_corners=True), homogeneous."""
    matrix = np.eye(len(shape) + 1)
    for axis, size in enumerate(shape):
        matrix[axis, axis] = 2.0 / max(size - 1, 1)
        matrix[axis, -1] = -1.0
    return matrix


def resample_to_grid(volume: torch.Tensor, src_affine: np.ndarray | torch.Tensor,
                     dst_affine: np.ndarray | torch.Tensor, dst_shape: Sequence[int],
                     mode: str = "bilinear") -> torch.Tensor:
    """Resample ``volume`` ``(C, *src_shape)`` from the grid of ``src_affine`` onto ``dst_affine``/``dst_shape``.

    Affines map voxel indices to the same world frame. Points outside the source
    take the nearest border value, so tiny extent differences never pad with zeros.
    """
    src_affine = np.asarray(torch.as_tensor(src_affine).cpu(), dtype=np.float64)
    dst_affine = np.asarray(torch.as_tensor(dst_affine).cpu(), dtype=np.float64)
    src_shape, dst_shape = tuple(volume.shape[1:]), tuple(int(s) for s in dst_shape)
    if src_shape == dst_shape and np.allclose(src_affine, dst_affine, atol=1e-6):
        return volume
    dst_to_src = np.linalg.inv(src_affine) @ dst_affine
    theta = _index_to_normalised(src_shape) @ dst_to_src @ np.linalg.inv(_index_to_normalised(dst_shape))
    order = list(reversed(range(len(dst_shape))))  # grid_sample's coordinates run (W, H, D)
    homogeneous = [*order, len(order)]
    theta = theta[np.ix_(homogeneous, homogeneous)][:-1]
    dtype = volume.dtype if volume.is_floating_point() else torch.float32
    theta_t = torch.as_tensor(theta, dtype=torch.float32, device=volume.device)[None]
    grid = F.affine_grid(theta_t, [1, volume.shape[0], *dst_shape], align_corners=True)
    out = F.grid_sample(volume[None].to(dtype), grid, mode=mode, padding_mode="border", align_corners=True)
    return out[0]
