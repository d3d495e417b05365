"""Validation Dice through a given prediction function; the model's mode is restored."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from segkit.engine.validation import evaluate_volumes


def test_perfect_and_wrong_predictions_and_mode_restored() -> None:
    label = torch.zeros(1, 8, 8, 8, dtype=torch.uint8)
    label[0, :4] = 1
    label[0, 6:, 6:] = 2
    volumes = [{"image": torch.zeros(1, 8, 8, 8), "label": label}]
    model = torch.nn.Identity().train()

    def perfect(_, image):
        return F.one_hot(label[0].long(), 4).permute(3, 0, 1, 2)[None].float()

    result = evaluate_volumes(model, volumes, perfect, num_classes=4, device=torch.device("cpu"))
    assert result["dice_per_class"][:2] == [1.0, 1.0] and math.isnan(result["dice_per_class"][2])
    assert result["mean_dice"] == 1.0 and model.training

    def background_only(_, image):
        return torch.zeros(1, 4, 8, 8, 8).index_fill_(1, torch.tensor([0]), 1.0)

    assert evaluate_volumes(model, volumes, background_only, 4, torch.device("cpu"))["mean_dice"] == 0.0
