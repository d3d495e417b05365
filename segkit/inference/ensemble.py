"""Several checkpoints predicting as one: the folds of a cross-validation, as nnU-Net predicts by default.

The members' logits are averaged, as nnU-Net v2 does for its folds and segkit's mirroring TTA does for its flips.
The average is taken per window batch, inside one sliding window: gaussian blending is linear, so that equals
averaging each member's blended logits while reading, padding and blending each volume once. The members must
preprocess alike and predict the same classes (:func:`ensemble_config`); their architectures may differ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from segkit.config import Config
from segkit.data.transforms import preprocessing_settings
from segkit.errors import CheckpointError


class Ensemble(nn.Module):
    """The mean of the members' logits, in float32 (each member may run under autocast)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.members[0](x).float()
        for member in self.members[1:]:
            total = total + member(x).float()
        return total / len(self.members)


def must_agree(cfg: Config) -> dict[str, object]:
    """The settings an ensemble's checkpoints must share: what a case's preprocessed image looks like (the
    settings that key the disk cache), how volumes are cut for 2D models, and the channels and classes."""
    shared = {f"data.{key}": value for key, value in json.loads(preprocessing_settings(cfg.data)).items()}
    return {**shared, "data.image_dims": cfg.data.image_dims, "data.slice_axis": cfg.data.slice_axis,
            "model.spatial_dims": cfg.model.spatial_dims, "model.in_channels": cfg.model.in_channels,
            "model.num_classes": cfg.model.num_classes}


def ensemble_config(members: Sequence[tuple[Path, Config]]) -> Config:
    """The config the checkpoints (each a path and its config) predict with: the first one's (window, overlap,
    precision, …), once every other checkpoint is checked to preprocess alike and predict the same classes; one
    line names the first difference otherwise. The same checkpoint twice is refused (it would count double)."""
    first_path, first_config = members[0]
    expected = must_agree(first_config)
    seen = {first_path.resolve()}
    for path, config in members[1:]:
        if path.resolve() in seen:
            raise CheckpointError(f"{path}: given twice in --checkpoint; list each checkpoint once")
        seen.add(path.resolve())
        for key, value in must_agree(config).items():
            if value != expected[key]:
                raise CheckpointError(
                    f"{path}: {key} is {_shown(value)} but {first_path} has {_shown(expected[key])} — the "
                    "checkpoints of an ensemble must preprocess alike and predict the same classes (train the folds "
                    "from one config)")
    return first_config


def _shown(value: object) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)
