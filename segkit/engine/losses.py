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


def build_loss(name: str, class_weights: list[float] | None = None,
               reductions: list[tuple[int, ...]] | None = None) -> nn.Module:
    """The registered loss ``name``; with ``reductions`` (one per deep-supervision output, full resolution first,
    e.g. ``UNet.output_reductions``) applied to each output against the labels sampled to its grid.

    Level ``l`` (0 = full resolution) is weighted by 0.5**l, weights normalised to sum to 1 (nnU-Net's halving;
    nnU-Net also gives the coarsest output weight 0, segkit keeps it: docs/TRAINING.md).
    """
    loss = LOSSES.get(name)(class_weights) if class_weights else LOSSES.get(name)()
    if reductions is None or len(reductions) <= 1:
        return loss
    weights = [0.5**level for level in range(len(reductions))]
    return _DeepSupervision(loss, [w / sum(weights) for w in weights], reductions)


def labels_at_block_centres(label: torch.Tensor, reduction: tuple[int, ...], size: torch.Size) -> torch.Tensor:
    """The labels ``(B, 1, *spatial)`` an output reduced by ``reduction`` sees: voxel ``i`` of each axis takes the
    label at ``i * r + r // 2``, the centre of the block it was pooled from (the last block, cut short where the
    patch is not a multiple of ``r``, takes its last real voxel). For a multiple this equals MONAI's nearest-exact
    resize; otherwise that resize stretches the labels over the output and drifts by up to ``r / 2`` voxels."""
    for axis, (r, n) in enumerate(zip(reduction, size, strict=True), start=2):
        if r == 1 and n == label.shape[axis]:
            continue
        index = (torch.arange(n, device=label.device) * r + r // 2).clamp_(max=label.shape[axis] - 1)
        label = label.index_select(axis, index)
    return label


class _DeepSupervision(DeepSupervisionLoss):
    """MONAI's deep-supervision wrapper whose labels for each output are taken at its voxels' block centres."""

    def __init__(self, loss: nn.Module, weights: list[float], reductions: list[tuple[int, ...]]) -> None:
        super().__init__(loss, weights=weights)
        self.reductions = reductions

    def forward(self, input: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if not isinstance(input, list | tuple):
            return super().forward(input, target)
        if len(input) != len(self.reductions):
            raise ValueError(f"deep supervision expects {len(self.reductions)} outputs, got {len(input)}")
        total = torch.zeros((), device=target.device)
        for weight, output, reduction in zip(self.weights, input, self.reductions, strict=True):
            total = total + weight * self.loss(output.float(), labels_at_block_centres(target, reduction,
                                                                                      output.shape[2:]))
        return total
