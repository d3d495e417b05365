"""Class-balanced patch centres that keep ``train.pos_fraction`` whichever classes a case holds."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from monai import transforms as mt


def present_class_ratios(class_sizes: Sequence[int], pos_fraction: float) -> list[float]:
    """Centre probabilities per class: background ``1 - pos_fraction``; the foreground classes present in the case
    (``class_sizes[c] > 0``) share ``pos_fraction`` equally; absent ones get 0. Without foreground: background."""
    present = [c for c in range(1, len(class_sizes)) if class_sizes[c] > 0]
    if not present:
        return [1.0] + [0.0] * (len(class_sizes) - 1)
    share = pos_fraction / len(present)
    return [1.0 - pos_fraction] + [share if c in present else 0.0 for c in range(1, len(class_sizes))]


class ForegroundShareCropd(mt.RandCropByLabelClassesd):
    """MONAI's class-balanced crop with ``pos_fraction`` kept per case, as in nnU-Net.

    MONAI gives an absent class ratio 0 and renormalises all ratios, so in a case without, say, the lesion class
    background took more than ``1 - pos_fraction`` of the centres (0.43 foreground instead of 0.67 with two of three
    classes absent). Here the classes the case holds share the whole foreground fraction.
    """

    def __init__(self, keys: Sequence[Hashable], label_key: str, spatial_size: Sequence[int], num_classes: int,
                 pos_fraction: float, indices_key: str) -> None:
        super().__init__(keys, label_key=label_key, spatial_size=spatial_size, num_classes=num_classes,
                         num_samples=1, ratios=present_class_ratios([1] * num_classes, pos_fraction),
                         indices_key=indices_key, warn=False)
        self.pos_fraction = pos_fraction

    def randomize(self, label: torch.Tensor, indices: list | None = None, image: torch.Tensor | None = None) -> None:
        """Set this case's ratios from its class indices, then draw the centre as MONAI does."""
        if indices is not None:
            self.cropper.ratios = present_class_ratios([len(i) for i in indices], self.pos_fraction)
        super().randomize(label, indices, image)
