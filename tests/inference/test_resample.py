"""Resampling between grids: exact for axis flips/permutations, exact on linear fields."""

from __future__ import annotations

import warnings

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


def _rotation(angles) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def test_axis_aligned_maps_run_separably_with_grid_samples_weights(monkeypatch) -> None:
    """Flips, swaps, scaling and shifts on an oblique grid shared by both sides (a prediction and its input):
    one axis at a time, equal to grid_sample's trilinear result with border clamping."""
    import segkit.inference.resample as resample

    rng = np.random.default_rng(1)
    oblique = np.eye(4)
    oblique[:3, :3] = _rotation((0.3, -0.2, 0.5))
    volume = torch.from_numpy(rng.standard_normal((3, 17, 12, 9))).float()
    src_affine = oblique @ _affine((1.5, 1.5, 1.5), (2.0, -3.0, 1.0))
    cases = [(_affine((0.8, 0.7, 2.5), (1.1, -2.6, 0.4)), (30, 25, 6)),
             (_affine((0.9, 1.2, 2.0), (20.0, 4.0, 30.0), perm=(2, 0, 1), flips=(-1, 1, -1)), (7, 18, 14))]
    separable, used = resample._separable_linear, []

    def counted(*args):
        used.append(1)
        return separable(*args)

    for dst, shape in cases:
        dst_affine = oblique @ dst
        used.clear()
        monkeypatch.setattr(resample, "_separable_linear", counted)
        fast = resample_to_grid(volume, src_affine, dst_affine, shape)
        monkeypatch.setattr(resample, "_axis_for_each_output_axis", lambda linear, shape: None)
        reference = resample_to_grid(volume, src_affine, dst_affine, shape)
        monkeypatch.undo()
        assert used == [1] and fast.shape == (3, *shape) and fast.is_contiguous()
        np.testing.assert_allclose(fast.numpy(), reference.numpy(), atol=2e-5)


def test_rotated_maps_fall_back_to_grid_sample() -> None:
    from segkit.inference.resample import _axis_for_each_output_axis

    shape = (64, 64, 32)
    assert _axis_for_each_output_axis(np.diag([2.0, -0.5, 1.0])[[2, 0, 1]], shape) == [1, 2, 0]
    assert _axis_for_each_output_axis(_rotation((0.0, 0.0, 0.1)), shape) is None
    assert _axis_for_each_output_axis(_rotation((0.0, 0.0, 1e-5)), shape) is None  # 6e-4 voxels at the far edge
    assert _axis_for_each_output_axis(np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), shape) is None


def test_a_header_rounded_to_float32_keeps_the_separable_path(monkeypatch) -> None:
    """NIfTI stores the affine in float32: an oblique prediction grid and its input then differ from an exact
    scaling by ~1e-8 off-axis, which moves no sample measurably and must not send the resampling to grid_sample."""
    import segkit.inference.resample as resample

    oblique = np.eye(4)
    oblique[:3, :3] = _rotation((0.3, -0.2, 0.5))
    src_affine = (oblique @ _affine((1.5, 1.5, 1.5), (2.0, -3.0, 1.0))).astype(np.float32).astype(np.float64)
    dst_affine = (oblique @ _affine((0.8, 0.7, 2.5), (1.1, -2.6, 0.4))).astype(np.float32).astype(np.float64)
    linear = (np.linalg.inv(src_affine) @ dst_affine)[:3, :3]
    assert 0 < np.abs(linear - np.diag(np.diag(linear))).max() < 1e-6  # not exactly separable
    volume = torch.from_numpy(np.random.default_rng(2).standard_normal((2, 17, 12, 9))).float()
    used = []
    separable = resample._separable_linear
    monkeypatch.setattr(resample, "_separable_linear", lambda *args: used.append(1) or separable(*args))
    fast = resample_to_grid(volume, src_affine, dst_affine, (30, 25, 6))
    monkeypatch.undo()
    monkeypatch.setattr(resample, "_axis_for_each_output_axis", lambda linear, shape: None)
    reference = resample_to_grid(volume, src_affine, dst_affine, (30, 25, 6))
    assert used == [1]
    np.testing.assert_allclose(fast.numpy(), reference.numpy(), atol=2e-5)


def test_an_output_axis_of_one_voxel_is_sampled_at_its_centre() -> None:
    """A rotated map onto a grid one voxel thick (grid_sample's path), against scipy's trilinear interpolation;
    torch's warning about unit-size grids is not shown: index 0 of such an axis is placed where torch puts it."""
    from scipy.ndimage import map_coordinates

    source = np.random.default_rng(0).random((1, 8, 8, 8)).astype(np.float32)
    dst_affine = np.eye(4)
    dst_affine[:3, :3] = _rotation((np.deg2rad(30), 0.0, 0.0))
    dst_affine[:3, 3] = [0.0, 3.0, 3.0]
    for shape in ((8, 8, 1), (8, 1, 8), (8, 8, 2)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = resample_to_grid(torch.from_numpy(source), np.eye(4), dst_affine, shape).numpy()
        index = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), 0).reshape(3, -1)
        points = (dst_affine @ np.vstack([index, np.ones(index.shape[1])]))[:3]
        expected = map_coordinates(source[0], points, order=1, mode="nearest").reshape(shape)
        np.testing.assert_allclose(out[0], expected, atol=1e-5)
