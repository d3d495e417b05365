"""Losses: registry names and deep-supervision weighting."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from segkit.engine.losses import build_loss, labels_at_block_centres


def test_deep_supervision_weights_halve_per_level_and_sum_to_one() -> None:
    torch.manual_seed(0)
    label = torch.randint(0, 3, (2, 1, 16, 16, 8))
    outputs = [torch.randn(2, 3, 16, 16, 8), torch.randn(2, 3, 8, 8, 4), torch.randn(2, 3, 4, 4, 2)]
    base = build_loss("dice_ce")
    expected = sum(
        w * base(out, F.interpolate(label.float(), size=out.shape[2:], mode="nearest-exact"))
        for w, out in zip([4 / 7, 2 / 7, 1 / 7], outputs, strict=True)
    )
    reductions = [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
    assert build_loss("dice_ce", reductions=reductions)(outputs, label) == pytest.approx(float(expected), rel=1e-5)


def test_labels_of_a_patch_that_is_no_multiple_are_taken_at_the_block_centres() -> None:
    """z of 20 reduced by 8 gives 3 voxels, pooled from z 0-7, 8-15 and 16-19 (+ padding): their labels are those at
    z 4, 12 and 19 (the last block's last real voxel), not nearest-exact's 3, 10 and 16."""
    label = torch.arange(20).reshape(1, 1, 1, 1, 20).expand(1, 1, 2, 3, 20)
    sampled = labels_at_block_centres(label, (2, 1, 8), torch.Size((1, 3, 3)))
    assert sampled.shape == (1, 1, 1, 3, 3)
    assert sampled[0, 0, 0, 0].tolist() == [4, 12, 19]
    stretched = F.interpolate(label.float(), size=(1, 3, 3), mode="nearest-exact")
    assert stretched[0, 0, 0, 0].tolist() == [3.0, 10.0, 16.0]  # what the resize gives instead


def test_deep_supervision_of_a_model_with_a_padded_patch_scores_each_output_against_its_block_centres() -> None:
    from segkit.config import ModelCfg
    from segkit.models import build_model

    model = build_model(ModelCfg(spatial_dims=3, encoder="resnet18", decoder_channels=(32, 16, 16, 8, 8),
                                 deep_supervision=True, strides=((2, 2, 1), 2, 2, 2, 2), norm="batch"))
    assert model.output_reductions == [(1, 1, 1), (2, 2, 1), (4, 4, 2), (8, 8, 4), (16, 16, 8)]
    torch.manual_seed(0)
    with torch.no_grad():
        outputs = model(torch.randn(2, 1, 64, 40, 20))
    label = torch.randint(0, 4, (2, 1, 64, 40, 20))
    base = build_loss("dice_ce")
    expected = sum(w * base(out, label[:, :, _centres(64, r[0])][:, :, :, _centres(40, r[1])][..., _centres(20, r[2])])
                   for w, out, r in zip([16 / 31, 8 / 31, 4 / 31, 2 / 31, 1 / 31], outputs, model.output_reductions,
                                        strict=True))
    got = build_loss("dice_ce", reductions=model.output_reductions)(outputs, label)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def _centres(size: int, r: int) -> list[int]:
    """Block centres by hand: ceil(size / r) blocks, the last one's cut to the last real voxel."""
    return [min(i * r + r // 2, size - 1) for i in range(-(-size // r))]


def test_single_level_is_the_plain_loss() -> None:
    logits, label = torch.randn(1, 4, 8, 8, 8), torch.randint(0, 4, (1, 1, 8, 8, 8))
    assert float(build_loss("dice_ce", reductions=[(1, 1, 1)])(logits, label)) == pytest.approx(
        float(build_loss("dice_ce")(logits, label)))


def test_dice_ce_falls_as_predictions_approach_the_labels() -> None:
    label = torch.randint(0, 3, (1, 1, 8, 8, 8))
    perfect = F.one_hot(label[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 20
    assert float(build_loss("dice_ce")(perfect, label)) < 0.01 < float(build_loss("dice_ce")(-perfect, label))
