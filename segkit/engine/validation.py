"""Validation: Dice, HD95 and surface Dice of a model on whole labelled volumes.

The engine does not know how volumes are predicted: the caller passes ``predict_logits`` (the train
pipeline passes the same sliding window ``predict`` uses), so validation and prediction agree. Scores are
kept per case (``score_volumes``) so that volumes can be shared out between processes and the lists
gathered before ``summarise``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.data.utils import affine_to_spacing

from segkit.engine.metrics import dice_per_class, mean_foreground, surface_metrics_per_class
from segkit.runtime import class_indices

PredictLogits = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]
CaseDone = Callable[["CaseScores", float], None]  # called after each volume with its scores and seconds


@dataclass(frozen=True)
class CaseScores:
    """Scores of one case, one entry per foreground class (NaN where a class is absent from both maps)."""

    case_id: str
    dice: list[float]
    hd95: list[float]
    nsd: list[float]


def _spacing(image: object, spatial_dims: int) -> list[float]:
    """Voxel sizes (mm) from the image's affine (a MetaTensor's), 1.0 per axis when it carries none."""
    affine = getattr(image, "affine", None)
    if affine is None:
        return [1.0] * spatial_dims
    return [float(s) for s in affine_to_spacing(torch.as_tensor(affine).cpu(), r=spatial_dims)]


def _case_scores(case_id: str, item: Mapping, pred: torch.Tensor, num_classes: int, tolerance_mm: float,
                 surface: bool) -> CaseScores:
    """Scores of one predicted label map against the item's label."""
    ref = torch.as_tensor(item["label"]).as_subclass(torch.Tensor)[0]
    dice = dice_per_class(pred, ref, num_classes)
    if surface:
        spacing = _spacing(item["image"], ref.ndim)
        hd95, nsd = surface_metrics_per_class(pred, ref, num_classes, spacing, tolerance_mm)
    else:
        hd95 = nsd = np.full(num_classes - 1, np.nan)
    return CaseScores(case_id, [float(v) for v in dice], [float(v) for v in hd95], [float(v) for v in nsd])


def score_volumes(model: torch.nn.Module, volumes: Iterable[Mapping], predict_logits: PredictLogits,
                  num_classes: int, device: torch.device, tolerance_mm: float = 1.0,
                  surface: bool = True, on_case: CaseDone | None = None) -> list[CaseScores]:
    """Dice, HD95 (mm) and surface Dice at ``tolerance_mm`` of each foreground class, one entry per volume.

    Items are MONAI dicts with ``image`` (C, *spatial) and ``label`` (1, *spatial) of the preprocessed volume,
    and optionally ``case_id`` (else ``case{i}``, ``i`` the position in ``volumes``). Distances use the voxel
    sizes of the image's affine (a MetaTensor's); an image without an affine is taken as 1.0 mm per axis.
    ``surface=False`` skips the distance metrics (HD95 and NSD are then NaN). Empty-class conventions are those
    of ``dice_per_class`` and ``surface_metrics_per_class``. The model is evaluated in eval mode without
    gradients; its training mode is restored afterwards. ``on_case(scores, seconds)``, when given, is called after
    each volume (a whole CT volume can take minutes on a CPU: the caller reports progress with it).
    """
    was_training = model.training
    model.eval()
    scores = []
    try:
        with torch.no_grad():
            for i, item in enumerate(volumes):
                started = time.perf_counter()
                image = torch.as_tensor(item["image"])[None].to(device)
                pred = class_indices(predict_logits(model, image), 1)[0].cpu()
                case_id = item.get("case_id")
                case_id = f"case{i}" if case_id is None else str(case_id)
                scores.append(_case_scores(case_id, item, pred, num_classes, tolerance_mm, surface))
                if on_case is not None:
                    on_case(scores[-1], time.perf_counter() - started)
    finally:
        model.train(was_training)
    return scores


def scores_to_rows(scores: Sequence[CaseScores], num_classes: int | None = None) -> torch.Tensor:
    """Scores as a float64 tensor of one row per case, ``[*dice, *hd95, *nsd]``, for gathering across processes.

    Case ids do not travel (``rows_to_scores`` numbers the cases). Pass ``num_classes`` so that a process with no
    cases still sends rows of the right width, shape (0, 3 * (num_classes - 1)).
    """
    values = [[*s.dice, *s.hd95, *s.nsd] for s in scores]
    width = 3 * (num_classes - 1) if num_classes is not None else len(values[0]) if values else 0
    if any(len(row) != width for row in values):
        raise ValueError(f"every case needs {width // 3} score(s) per metric to be sent as rows")
    return torch.tensor(values, dtype=torch.float64) if values else torch.empty((0, width), dtype=torch.float64)


def rows_to_scores(rows: torch.Tensor) -> list[CaseScores]:
    """The inverse of ``scores_to_rows``; cases are named ``case{i}`` by their row."""
    if rows.ndim != 2 or rows.shape[1] % 3:
        raise ValueError(f"score rows must have shape (cases, 3 * foreground classes), got {tuple(rows.shape)}")
    k = rows.shape[1] // 3
    table = rows.double().cpu().tolist()
    return [CaseScores(f"case{i}", row[:k], row[k:2 * k], row[2 * k:]) for i, row in enumerate(table)]


def _table(rows: list[list[float]]) -> np.ndarray:
    """Case × class table; (0, 0) when there are no cases."""
    return np.array(rows, dtype=float) if rows else np.empty((0, 0))


def summarise(scores: Sequence[CaseScores]) -> dict:
    """Means over cases of per-case scores.

    Keys: ``dice_per_class``, ``hd95_per_class``, ``nsd_per_class`` (per foreground class, mean over the cases
    where it is not NaN; NaN where it is NaN in every case), ``mean_dice``, ``mean_hd95``, ``mean_nsd`` (the mean
    of the per-class values, NaN skipped — a class found in few cases weighs as much as one found in all; NaN when
    none is finite) and ``cases`` (count). ``mean_dice`` picks the best checkpoint and stops at ``stop_at_dice``.
    """
    result: dict = {}
    for name in ("dice", "hd95", "nsd"):
        table = _table([getattr(s, name) for s in scores])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a class absent from every case stays NaN
            per_class = np.nanmean(table, axis=0)
        result[f"{name}_per_class"] = [float(v) for v in per_class]
        result[f"mean_{name}"] = mean_foreground(per_class)  # nnU-Net's foreground mean: every class counts alike
    result["cases"] = len(scores)
    return result


def evaluate_volumes(model: torch.nn.Module, volumes: Iterable[Mapping], predict_logits: PredictLogits,
                     num_classes: int, device: torch.device, tolerance_mm: float = 1.0,
                     surface: bool = True) -> dict:
    """``summarise(score_volumes(...))``: per-class and mean Dice, HD95 (mm) and surface Dice of the volumes."""
    return summarise(score_volumes(model, volumes, predict_logits, num_classes, device, tolerance_mm, surface))
