"""Validation: Dice of a model on whole labelled volumes.

The engine does not know how volumes are predicted: the caller passes ``predict_logits`` (the train
pipeline passes the same sliding window ``predict`` uses), so validation and prediction agree.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch

from segkit.engine.metrics import dice_per_class, mean_foreground

PredictLogits = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]


def evaluate_volumes(model: torch.nn.Module, volumes: Iterable[Mapping[str, torch.Tensor]],
                     predict_logits: PredictLogits, num_classes: int, device: torch.device) -> dict:
    """Per-class Dice (mean over cases) and the mean foreground Dice on preprocessed volumes."""
    was_training = model.training
    model.eval()
    scores = []
    with torch.no_grad():
        for item in volumes:
            image = torch.as_tensor(item["image"])[None].to(device)
            pred = predict_logits(model, image).argmax(1)[0]
            scores.append(dice_per_class(pred.cpu(), torch.as_tensor(item["label"])[0], num_classes))
    model.train(was_training)
    table = np.stack(scores)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class absent from every case stays NaN
        per_class = np.nanmean(table, axis=0)
    return {"dice_per_class": [float(v) for v in per_class], "mean_dice": mean_foreground(table)}
