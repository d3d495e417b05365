"""Losses: registry names and deep-supervision weighting."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from segkit.engine.losses import build_loss


def test_deep_supervision_weights_halve_per_level_and_sum_to_one() -> None:
    torch.manual_seed(0)
    label = torch.randint(0, 3, (2, 1, 16, 16, 8))
    outputs = [torch.randn(2, 3, 16, 16, 8), torch.randn(2, 3, 8, 8, 4), torch.randn(2, 3, 4, 4, 2)]
    base = build_loss("dice_ce")
    expected = sum(
        w * base(out, F.interpolate(label.float(), size=out.shape[2:], mode="nearest-exact"))
        for w, out in zip([4 / 7, 2 / 7, 1 / 7], outputs, strict=True)
    )
    assert build_loss("dice_ce", levels=3)(outputs, label) == pytest.approx(float(expected), rel=1e-5)


def test_single_level_is_the_plain_loss() -> None:
    logits, label = torch.randn(1, 4, 8, 8, 8), torch.randint(0, 4, (1, 1, 8, 8, 8))
    assert float(build_loss("dice_ce", levels=1)(logits, label)) == pytest.approx(
        float(build_loss("dice_ce")(logits, label)))


def test_dice_ce_falls_as_predictions_approach_the_labels() -> None:
    label = torch.randint(0, 3, (1, 1, 8, 8, 8))
    perfect = F.one_hot(label[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 20
    assert float(build_loss("dice_ce")(perfect, label)) < 0.01 < float(build_loss("dice_ce")(-perfect, label))
