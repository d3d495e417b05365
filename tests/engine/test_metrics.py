"""Dice, HD95 and surface Dice per class: against direct counts and MONAI, spacing, and empty-class conventions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice
from monai.networks.utils import one_hot

from segkit.engine.metrics import dice_per_class, mean_foreground, surface_metrics_per_class


def test_dice_matches_direct_count() -> None:
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 3, size=(12, 10, 8))
    pred = np.where(rng.random(ref.shape) < 0.8, ref, rng.integers(0, 3, size=ref.shape))
    scores = dice_per_class(pred, ref, 3)
    for k in (1, 2):
        expected = 2 * np.sum((pred == k) & (ref == k)) / (np.sum(pred == k) + np.sum(ref == k))
        assert np.isclose(scores[k - 1], expected)


def test_class_absent_in_both_is_nan_and_false_positive_is_zero() -> None:
    ref = np.zeros((4, 4, 4), dtype=np.uint8)
    ref[:2] = 1
    pred = ref.copy()
    pred[3, 3, 3] = 3
    scores = dice_per_class(pred, ref, 4)
    assert scores[0] == 1.0
    assert np.isnan(scores[1])  # class 2 absent in both
    assert scores[2] == 0.0  # class 3 only predicted
    assert mean_foreground(scores) == 0.5


def _cube(shape: tuple[int, ...], start: int, size: int, label: int = 1, axis_shift: int = 0) -> np.ndarray:
    """A cube of ``label`` at ``start`` (shifted by ``axis_shift`` voxels along axis 0) in a zero volume."""
    volume = np.zeros(shape, dtype=np.uint8)
    volume[start + axis_shift:start + axis_shift + size, start:start + size, start:start + size] = label
    return volume


def _sphere(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def test_surface_metrics_equal_monai_on_non_empty_classes() -> None:
    shape = (20, 20, 20)
    ref = _sphere(shape, (10, 10, 10), 6).astype(np.uint8)
    ref[_sphere(shape, (10, 10, 10), 3)] = 2
    pred = _sphere(shape, (11, 10, 9), 7).astype(np.uint8)
    pred[_sphere(shape, (10, 11, 10), 2)] = 2
    spacing, tolerance = (1.5, 1.0, 2.0), 2.0
    hd95, nsd = surface_metrics_per_class(pred, torch.as_tensor(ref), 3, spacing, tolerance)
    pred_oh, ref_oh = (one_hot(torch.as_tensor(x).long()[None, None], 3) for x in (pred, ref))
    expected_hd = compute_hausdorff_distance(pred_oh, ref_oh, percentile=95, spacing=list(spacing))[0]
    expected_nsd = compute_surface_dice(pred_oh, ref_oh, [tolerance] * 2, spacing=list(spacing))[0]
    np.testing.assert_allclose(hd95, expected_hd.double().numpy())
    np.testing.assert_allclose(nsd, expected_nsd.double().numpy())
    assert np.all(hd95 > 0) and np.all((nsd > 0) & (nsd < 1))


def test_surface_metrics_use_the_spacing_of_each_axis() -> None:
    ref = _cube((20, 20, 20), 5, 6)
    pred = _cube((20, 20, 20), 5, 6, axis_shift=2)
    assert surface_metrics_per_class(pred, ref, 2, (1.0, 1.0, 1.0), 1.0)[0][0] == pytest.approx(2.0)
    hd95, nsd_tight = surface_metrics_per_class(pred, ref, 2, (3.0, 1.0, 1.0), 1.0)
    assert hd95[0] == pytest.approx(6.0)
    assert surface_metrics_per_class(pred, ref, 2, (3.0, 1.0, 1.0), 7.0)[1][0] == 1.0
    assert nsd_tight[0] < 1.0


def test_surface_metric_conventions_for_empty_classes_without_warnings() -> None:
    shape, spacing = (20, 20, 20), (3.0, 1.0, 1.0)
    diagonal = np.sqrt(60.0**2 + 20.0**2 + 20.0**2)
    ref = _cube(shape, 2, 5) + _cube(shape, 12, 5, label=2)  # class 3 absent from both
    pred = _cube(shape, 2, 5) + _cube(shape, 12, 5, label=4)  # class 2 missed, class 4 a false positive
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hd95, nsd = surface_metrics_per_class(pred, ref, 5, spacing, 1.0)
    assert hd95[0] == 0.0 and nsd[0] == 1.0
    assert hd95[1] == pytest.approx(diagonal) and nsd[1] == 0.0
    assert np.isnan(hd95[2]) and np.isnan(nsd[2])
    assert hd95[3] == pytest.approx(diagonal) and nsd[3] == 0.0


def test_mismatched_shapes_and_spacing_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        surface_metrics_per_class(np.zeros((4, 4, 4), int), np.zeros((4, 4, 5), int), 2, (1, 1, 1), 1.0)
    with pytest.raises(ValueError, match="shape"):
        dice_per_class(np.zeros((4, 4, 4), int), np.zeros((4, 4, 5), int), 2)
    with pytest.raises(ValueError, match="spacing"):
        surface_metrics_per_class(np.zeros((4, 4, 4), int), np.zeros((4, 4, 4), int), 2, (1, 1), 1.0)
