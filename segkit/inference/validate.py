"""Dice of a model on whole labelled volumes with the prediction sliding window."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from segkit.engine.metrics import dice_per_class, mean_foreground
from segkit.inference.sliding_window import WindowSettings, sliding_window_logits


def evaluate_volumes(model: torch.nn.Module, volumes: Iterable[Mapping[str, torch.Tensor]], settings: WindowSettings,
                     num_classes: int, device: torch.device, amp_dtype: torch.dtype | None = None) -> dict:
    """Per-class Dice (mean over cases) and the mean foreground Dice on preprocessed volumes."""
    was_training = model.training
    model.eval()
    scores = []
    for item in volumes:
        image = torch.as_tensor(item["image"])[None].to(device)
        pred = sliding_window_logits(model, image, settings, amp_dtype).argmax(1)[0]
        scores.append(dice_per_class(pred.cpu(), torch.as_tensor(item["label"])[0], num_classes))
    model.train(was_training)
    table = np.stack(scores)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class absent from every case stays NaN
        per_class = np.nanmean(table, axis=0)
    return {"dice_per_class": [float(v) for v in per_class], "mean_dice": mean_foreground(table)}
