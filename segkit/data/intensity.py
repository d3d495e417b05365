"""nnU-Net's CT normalisation with each channel's own statistics (two CT phases, or CT beside another image)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import MapTransform


class PerChannelClipZScored(MapTransform):
    """Clip channel ``c`` to ``[lower_c, upper_c]``, then subtract ``mean_c`` and divide by ``std_c``.

    ``stats`` holds one ``(lower, upper, mean, std)`` per channel, as ``data.ct_stats`` lists them. MONAI's
    ``ScaleIntensityRange`` (what one set of statistics uses) has no per-channel form, hence this transform.
    """

    def __init__(self, keys: str | Sequence[str], stats: Sequence[Sequence[float]]) -> None:
        super().__init__(keys)
        self.lower, self.upper, self.mean, self.std = (torch.tensor(column, dtype=torch.float32)
                                                       for column in zip(*stats, strict=True))

    def __call__(self, data: dict) -> dict:
        out = dict(data)
        for key in self.key_iterator(out):
            image = out[key]
            if image.shape[0] != len(self.mean):
                raise ValueError(f"data.ct_stats lists {len(self.mean)} channels but the image has {image.shape[0]}")
            shape = (-1,) + (1,) * (image.ndim - 1)
            per_channel = [t.to(image.device).view(shape) for t in (self.lower, self.upper, self.mean, self.std)]
            lower, upper, mean, std = per_channel
            out[key] = (image.float().clamp(lower, upper) - mean) / std
        return out
