"""The checkerboard index on synthetic logit maps with known spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit.compare.checkerboard import checkerboard_index, nyquist_share


def _grid(shape: tuple[int, ...]) -> np.ndarray:
    return np.indices(shape).sum(axis=0)


def _smooth(shape: tuple[int, ...]) -> np.ndarray:
    """A Gaussian blob: a smooth logit map."""
    grid = np.indices(shape, dtype=float)
    centre = [(n - 1) / 2 for n in shape]
    return 4.0 * np.exp(-sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) / (2 * 5.0**2)) - 2.0


def _logits(*maps: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.stack(maps), dtype=torch.float32)


def test_period_two_pattern_scores_one_and_a_smooth_map_near_zero() -> None:
    shape = (24, 20, 8)
    checker = np.where(_grid(shape) % 2 == 0, 1.0, -1.0)
    assert checkerboard_index(_logits(checker, -checker), (0, 1, 2)) == pytest.approx(1.0)
    assert checkerboard_index(_logits(_smooth(shape), -_smooth(shape)), (0, 1, 2)) < 1e-3


def test_a_checkerboard_on_a_smooth_map_raises_the_index() -> None:
    shape = (32, 32)
    smooth = _smooth(shape)
    rippled = smooth + 0.05 * np.where(_grid(shape) % 2 == 0, 1.0, -1.0)
    plain = checkerboard_index(_logits(-smooth, smooth), (0, 1))
    assert checkerboard_index(_logits(-rippled, rippled), (0, 1)) > 10 * plain


def test_stripes_count_only_along_their_axis() -> None:
    stripes = np.where(np.indices((16, 12))[0] % 2 == 0, 1.0, -1.0)  # alternating along axis 0 only
    logits = _logits(stripes)
    assert nyquist_share(logits, 0) == pytest.approx(1.0)
    assert nyquist_share(logits, 1) == 0.0  # every line along axis 1 is constant: no AC energy
    assert checkerboard_index(logits, (0, 1)) == pytest.approx(0.5)


def test_white_noise_spreads_its_energy_evenly() -> None:
    noise = np.random.default_rng(0).standard_normal((2, 64, 64))
    share = checkerboard_index(torch.as_tensor(noise), (0, 1))
    assert share == pytest.approx(1 / 63, rel=0.25)  # one of n - 1 = 63 non-constant bins


def test_odd_lengths_are_cut_and_short_axes_left_out() -> None:
    checker = np.where(_grid((9, 3)) % 2 == 0, 1.0, -1.0)
    logits = _logits(checker)
    assert nyquist_share(logits, 0) == pytest.approx(1.0)  # the last of 9 samples dropped
    assert nyquist_share(logits, 1) is None  # 3 voxels: too short
    assert checkerboard_index(logits, (0, 1)) == pytest.approx(1.0)
    assert np.isnan(checkerboard_index(logits, (1,)))
