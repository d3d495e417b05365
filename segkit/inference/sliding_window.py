"""Sliding-window inference over whole volumes (MONAI's implementation for now)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.inferers import sliding_window_inference

from segkit.config import Config
from segkit.runtime import autocast


@dataclass(frozen=True)
class WindowSettings:
    """Window size (on the volume: one slice thick for 2D models), overlap, windows per pass, blending."""

    roi_size: tuple[int, ...]
    overlap: float = 0.5
    sw_batch_size: int = 2
    blend: str = "gaussian"

    @classmethod
    def from_config(cls, cfg: Config) -> WindowSettings:
        """The settings a run's config asks for."""
        return cls(cfg.on_volume(cfg.roi_size), cfg.infer.overlap, cfg.infer.sw_batch_size, cfg.infer.blend)


@torch.no_grad()
def sliding_window_logits(model: torch.nn.Module, image: torch.Tensor, settings: WindowSettings,
                          amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Logits ``(B, K, *spatial)`` in float32 for ``image`` ``(B, C, *spatial)`` on its device."""
    with autocast(image.device, amp_dtype):
        logits = sliding_window_inference(
            image, settings.roi_size, settings.sw_batch_size, model,
            overlap=settings.overlap, mode=settings.blend, padding_mode="constant",
        )
    return torch.as_tensor(logits).float()
