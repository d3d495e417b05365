"""Segmentation losses from MONAI, registered by name in ``LOSSES``.

Every loss takes logits ``(B, C, ...)`` and integer labels ``(B, 1, ...)``.
"""

from __future__ import annotations

import torch
from monai.losses import DeepSupervisionLoss, DiceCELoss, DiceFocalLoss, DiceLoss
from torch import nn

from segkit.registry import LOSSES


@LOSSES.register("dice_ce")
def dice_ce() -> nn.Module:
    """Soft Dice over the batch on foreground classes + cross-entropy (nnU-Net's default).

    Batch Dice keeps patches that lack a small class from pushing that class to zero everywhere.
    """
    return DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)


@LOSSES.register("dice_focal")
def dice_focal() -> nn.Module:
    """Soft Dice + focal loss."""
    return DiceFocalLoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)


@LOSSES.register("dice")
def dice() -> nn.Module:
    """Soft Dice alone."""
    return DiceLoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)


@LOSSES.register("ce")
def cross_entropy(class_weights: list[float] | None = None) -> nn.Module:
    """Cross-entropy, optionally weighted per class (``train.class_weights``)."""
    return _LabelCrossEntropy(class_weights)


class _LabelCrossEntropy(nn.Module):
    """``torch.nn.CrossEntropyLoss`` for integer labels shaped ``(B, 1, ...)``."""

    def __init__(self, class_weights: list[float] | None) -> None:
        super().__init__()
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.ce = nn.CrossEntropyLoss(weight=weight)

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, label[:, 0].long())


def build_loss(name: str, levels: int = 1, class_weights: list[float] | None = None) -> nn.Module:
    """The registered loss ``name``; with ``levels > 1`` applied to deep-supervision outputs.

    Level ``l`` (0 = full resolution) is weighted by 0.5**l, weights normalised to sum to 1;
    MONAI's wrapper resizes the labels to each output with nearest-exact interpolation.
    """
    loss = LOSSES.get(name)(class_weights) if class_weights else LOSSES.get(name)()
    if levels <= 1:
        return loss
    weights = [0.5**level for level in range(levels)]
    return _DeepSupervision(loss, weights=[w / sum(weights) for w in weights])


class _DeepSupervision(DeepSupervisionLoss):
    """MONAI's deep-supervision wrapper for integer labels of any dtype (interpolation needs floats)."""

    def get_loss(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().get_loss(input, target if target.is_floating_point() else target.float())
