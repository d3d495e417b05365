"""Overlap metrics on label maps (MONAI's implementations)."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot


def dice_per_class(pred: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of each foreground class (1..num_classes-1) for one case; NaN where both are empty.

    ``pred`` and ``ref`` are integer label maps of equal spatial shape (no channel axis).
    """
    pred_t = torch.as_tensor(np.asarray(pred) if isinstance(pred, np.ndarray) else pred).long()
    ref_t = torch.as_tensor(np.asarray(ref) if isinstance(ref, np.ndarray) else ref).long()
    if pred_t.shape != ref_t.shape:
        raise ValueError(f"prediction shape {tuple(pred_t.shape)} differs from reference {tuple(ref_t.shape)}")
    pred_oh = one_hot(pred_t[None, None], num_classes)
    ref_oh = one_hot(ref_t[None, None], num_classes)
    scores = compute_dice(pred_oh, ref_oh, include_background=False, ignore_empty=False)[0].double()
    spatial = tuple(range(1, pred_oh.ndim - 1))
    both_empty = (pred_oh[0, 1:].sum(spatial) == 0) & (ref_oh[0, 1:].sum(spatial) == 0)
    scores[both_empty] = float("nan")
    return scores.cpu().numpy()


def mean_foreground(scores: np.ndarray) -> float:
    """Mean over classes and cases, ignoring NaN (classes absent in both)."""
    finite = np.asarray(scores, dtype=float)
    return float(np.nanmean(finite)) if np.isfinite(finite).any() else float("nan")
