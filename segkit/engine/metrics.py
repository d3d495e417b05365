"""Overlap and surface-distance metrics on label maps (MONAI's implementations)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
from monai.networks.utils import one_hot

LabelMap = torch.Tensor | np.ndarray


def _label_pair(pred: LabelMap, ref: LabelMap) -> tuple[torch.Tensor, torch.Tensor]:
    """Both label maps as plain long tensors (MetaTensor metadata dropped); ValueError if their shapes differ."""
    pred_t = torch.as_tensor(pred).as_subclass(torch.Tensor).long()
    ref_t = torch.as_tensor(ref).as_subclass(torch.Tensor).long()
    if pred_t.shape != ref_t.shape:
        raise ValueError(f"prediction shape {tuple(pred_t.shape)} differs from reference {tuple(ref_t.shape)}")
    return pred_t, ref_t


def _present(one_hot_map: torch.Tensor) -> torch.Tensor:
    """Whether each foreground channel of a one-hot (1, C, *spatial) map holds any voxel."""
    return one_hot_map[0, 1:].flatten(1).any(1).cpu()


def dice_per_class(pred: LabelMap, ref: LabelMap, num_classes: int) -> np.ndarray:
    """Dice of each foreground class (1..num_classes-1) for one case; NaN where both are empty.

    ``pred`` and ``ref`` are integer label maps of equal spatial shape (no channel axis).
    """
    pred_t, ref_t = _label_pair(pred, ref)
    pred_oh = one_hot(pred_t[None, None], num_classes)
    ref_oh = one_hot(ref_t[None, None], num_classes)
    scores = compute_dice(pred_oh, ref_oh, include_background=False, ignore_empty=False)[0].double()
    scores[(~_present(pred_oh) & ~_present(ref_oh)).to(scores.device)] = float("nan")
    return scores.cpu().numpy()


def surface_metrics_per_class(pred: LabelMap, ref: LabelMap, num_classes: int, spacing: Sequence[float],
                              tolerance_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """HD95 (mm) and normalised surface Dice (NSD) at ``tolerance_mm`` of each foreground class for one case.

    ``pred`` and ``ref`` are integer label maps of equal spatial shape (2D or 3D, no channel axis);
    ``spacing`` is the voxel size in mm along each array axis, in the same order as the axes. Both metrics come
    from MONAI (``compute_hausdorff_distance`` with ``percentile=95``, ``compute_surface_dice``), on the CPU.

    Conventions for empty classes, in place of MONAI's NaN/inf (whose warnings are silenced):

    - class absent from both prediction and reference: HD95 NaN and NSD NaN, like Dice, so that means skip it;
    - class present in only one of them (missed structure or false positive): HD95 is the diagonal of the
      volume in mm (``sqrt(sum((shape * spacing) ** 2))``), a finite worst case so that means stay finite and
      the error is penalised; NSD 0.0.

    Returns two float64 arrays of length ``num_classes - 1``: HD95 and NSD.
    """
    pred_t, ref_t = _label_pair(pred, ref)
    pred_t, ref_t = pred_t.cpu(), ref_t.cpu()
    spacing_mm = [float(s) for s in spacing]
    if len(spacing_mm) != pred_t.ndim:
        raise ValueError(f"spacing {spacing_mm} has {len(spacing_mm)} values for {pred_t.ndim}-D label maps")
    pred_oh = one_hot(pred_t[None, None], num_classes)
    ref_oh = one_hot(ref_t[None, None], num_classes)
    with warnings.catch_warnings():
        # MONAI warns about every empty class (replaced below) and about its own deprecated internal argument
        warnings.filterwarnings("ignore", message=r"the (ground truth|prediction) of class .* is all 0")
        warnings.filterwarnings("ignore", message=r".*always_return_as_numpy", category=FutureWarning)
        hd95 = compute_hausdorff_distance(pred_oh, ref_oh, percentile=95, spacing=spacing_mm)[0].double()
        nsd = compute_surface_dice(pred_oh, ref_oh, class_thresholds=[float(tolerance_mm)] * (num_classes - 1),
                                   spacing=spacing_mm, include_background=False)[0].double()
    in_pred, in_ref = _present(pred_oh), _present(ref_oh)
    only_one = in_pred ^ in_ref
    hd95[only_one] = math.hypot(*(n * s for n, s in zip(pred_t.shape, spacing_mm, strict=True)))
    nsd[only_one] = 0.0
    hd95[~in_pred & ~in_ref] = float("nan")
    nsd[~in_pred & ~in_ref] = float("nan")
    return hd95.numpy(), nsd.numpy()


def nan_stats_over_cases(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std over cases (axis 0), NaN ignored; NaN where a column has no value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=0), np.nanstd(values, axis=0)


def mean_foreground(scores: np.ndarray) -> float:
    """Mean of ``scores`` ignoring NaN (classes absent in both prediction and reference); NaN when none is finite."""
    finite = np.asarray(scores, dtype=float)
    return float(np.nanmean(finite)) if np.isfinite(finite).any() else float("nan")


def foreground_mean(values: np.ndarray) -> float:
    """nnU-Net's foreground mean of (cases, classes) scores: the mean over classes of each class's mean over cases,
    NaN ignored at both steps, so a class found in few cases weighs as much as one found in all (training's
    validation and ``segkit evaluate`` report the same number); NaN when no score is finite."""
    return mean_foreground(nan_stats_over_cases(np.asarray(values, dtype=float).reshape(len(values), -1))[0])


def label_volumes_ml(counts: np.ndarray, affine: np.ndarray) -> dict[str, float]:
    """Volume in ml of each foreground label present, from voxel ``counts`` per label and the voxel-to-world
    ``affine`` (mm, 4×4)."""
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0
    return {str(k): round(float(n) * voxel_ml, 4) for k, n in enumerate(counts) if k > 0 and n > 0}


def label_areas_mm2(counts: np.ndarray, affine: np.ndarray) -> dict[str, float]:
    """Area in mm² of each foreground label present in a 2D image, from pixel ``counts`` per label and its 3×3
    pixel-to-world ``affine``."""
    pixel_mm2 = abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:2, :2])))
    return {str(k): round(float(n) * pixel_mm2, 4) for k, n in enumerate(counts) if k > 0 and n > 0}


def label_measures(counts: np.ndarray, affine: np.ndarray) -> dict[str, dict[str, float]]:
    """What a prediction manifest records of each label: ``volumes_ml`` for a volume (4×4 affine), ``areas_mm2``
    for a 2D image (3×3 affine) — a pixel has no volume."""
    if np.asarray(affine).shape == (3, 3):
        return {"areas_mm2": label_areas_mm2(counts, affine)}
    return {"volumes_ml": label_volumes_ml(counts, affine)}
