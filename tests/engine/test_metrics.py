"""Dice per class against a direct count and MONAI conventions for empty classes."""

from __future__ import annotations

import numpy as np

from segkit.engine.metrics import dice_per_class, mean_foreground


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
