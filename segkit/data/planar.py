"""2D images stored with a third axis of length 1 (e.g. a NIfTI of shape (X, Y, 1)), made 2D for a 2D model."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.transforms import MapTransform


class DropUnitDepthd(MapTransform):
    """Channel-first images ``(C, X, Y, 1)`` become ``(C, X, Y)``; 2D images ``(C, X, Y)`` pass unchanged.

    The metadata (affine, original affine, spatial shape) is kept as read, so prediction puts the axis back and
    writes the label map on the input's exact grid (``Predictor.infer``)."""

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        """``data`` with each key's trailing unit axis removed where it has one."""
        out = dict(data)
        for key in self.key_iterator(out):
            image = out[key]
            if image.ndim == 4 and image.shape[3] == 1:
                out[key] = image[..., 0]
        return out
