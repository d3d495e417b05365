"""Segmentation losses from MONAI, registered by name in ``LOSSES``.

Every loss takes logits ``(B, C, ...)`` and integer labels ``(B, 1, ...)``.
"""

from __future__ import annotations

from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss
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


def build_loss(name: str) -> nn.Module:
    """The registered loss ``name``."""
    return LOSSES.get(name)()
