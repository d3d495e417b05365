"""Resampling between grids: exact for axis flips/permutations, exact on linear fields."""

from __future__ import annotations

import numpy as np
import torch

from segkit.inference.resample import resample_to_grid


def _affine(spacing, origin, perm=(0, 1, 2), flips=(1, 1, 1)) -> np.ndarray:
    affine = np.zeros((4, 4))
    for axis, (world, sign) in enumerate(zip(perm, flips, strict=True)):
        affine[world, axis] = sign * spacing[axis]
    affine[:3, 3] = origin
    affine[3, 3] = 1.0
    return affine


def test_same_grid_returns_input_unchanged() -> None:
    volume = torch.randn(2, 5, 6, 7)
    affine = _affine((1.0, 1.0, 2.0), (3.0, 4.0, 5.0))
    assert resample_to_grid(volume, affine, affine, (5, 6, 7)) is volume


def test_flipped_and_permuted_grid_is_reproduced_exactly() -> None:
    rng = np.random.default_rng(0)
    dst = rng.integers(0, 4, size=(6, 7, 8)).astype(np.float32)
    dst_affine = _affine((0.8, 0.9, 2.5), (10.0, -20.0, 30.0))
    # the source grid holds the same voxels with axes swapped (0<->2) and axis 1 flipped
    src = np.flip(dst, axis=1).transpose(2, 1, 0).copy()
    src_affine = np.zeros((4, 4))
    src_affine[:, 0] = dst_affine[:, 2]
    src_affine[:, 1] = -dst_affine[:, 1]
    src_affine[:, 2] = dst_affine[:, 0]
    src_affine[:3, 3] = dst_affine[:3, :3] @ np.array([0, 6, 0]) + dst_affine[:3, 3]
    src_affine[3, 3] = 1.0
    for mode in ("nearest", "bilinear"):
        out = resample_to_grid(torch.from_numpy(src)[None], src_affine, dst_affine, dst.shape, mode=mode)
        np.testing.assert_allclose(out[0].numpy(), dst, atol=1e-4)


def test_linear_field_is_resampled_exactly_across_spacings() -> None:
    def field(affine: np.ndarray, shape) -> np.ndarray:
        idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
        world = idx @ affine[:3, :3].T + affine[:3, 3]
        return (world @ np.array([0.5, -1.0, 2.0]) + 3.0).reshape(shape)

    src_affine = _affine((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    dst_affine = _affine((0.7, 1.3, 2.5), (1.1, 0.4, 0.9))
    src_shape, dst_shape = (20, 20, 30), (10, 10, 8)
    src = torch.from_numpy(field(src_affine, src_shape)).float()[None]
    out = resample_to_grid(src, src_affine, dst_affine, dst_shape, mode="bilinear")
    np.testing.assert_allclose(out[0].numpy(), field(dst_affine, dst_shape), atol=1e-3)
