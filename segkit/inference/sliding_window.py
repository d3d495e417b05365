"""Sliding-window inference over whole volumes (MONAI's implementation), with out-of-memory fallbacks."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from monai.inferers import sliding_window_inference

from segkit.config import Config
from segkit.runtime import autocast

DEFAULT_SW_BATCH = 2  # ``infer.sw_batch_size: auto`` where no GPU memory can be measured


@dataclass(frozen=True)
class WindowSettings:
    """Window size (on the volume: one slice thick for 2D models), overlap, windows per pass, blending."""

    roi_size: tuple[int, ...]
    overlap: float = 0.5
    sw_batch_size: int = DEFAULT_SW_BATCH
    blend: str = "gaussian"

    @classmethod
    def from_config(cls, cfg: Config) -> WindowSettings:
        """The settings a run's config asks for (``auto`` windows per pass → the default here)."""
        batch = cfg.infer.sw_batch_size if isinstance(cfg.infer.sw_batch_size, int) else DEFAULT_SW_BATCH
        return cls(cfg.on_volume(cfg.roi_size), cfg.infer.overlap, batch, cfg.infer.blend)


@torch.no_grad()
def sliding_window_logits(model: torch.nn.Module, image: torch.Tensor, settings: WindowSettings,
                          amp_dtype: torch.dtype | None = None, stitch_device: torch.device | None = None
                          ) -> torch.Tensor:
    """Logits ``(B, K, *spatial)`` in float32 for ``image`` ``(B, C, *spatial)``.

    Windows run on ``image``'s device; the blended output is assembled on ``stitch_device``
    (default: the same device; the host when the whole volume's logits do not fit on the GPU).
    """
    with autocast(image.device, amp_dtype):
        logits = sliding_window_inference(
            image, settings.roi_size, settings.sw_batch_size, model,
            overlap=settings.overlap, mode=settings.blend, padding_mode="constant",
            sw_device=image.device, device=stitch_device or image.device,
        )
    return torch.as_tensor(logits).float()


def logits_with_fallbacks(model: torch.nn.Module, image: torch.Tensor, settings: WindowSettings,
                          amp_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, WindowSettings]:
    """Like :func:`sliding_window_logits`; on a GPU out-of-memory error halve the windows per pass and retry,
    and with one window per pass stitch on the host. Returns the logits and the settings that worked."""
    stitch = None
    while True:
        try:
            return sliding_window_logits(model, image, settings, amp_dtype, stitch), settings
        except torch.OutOfMemoryError:
            if image.device.type != "cuda" or (settings.sw_batch_size == 1 and stitch is not None):
                raise
            torch.cuda.empty_cache()
            if settings.sw_batch_size > 1:
                settings = replace(settings, sw_batch_size=settings.sw_batch_size // 2)
            else:
                stitch = torch.device("cpu")


def auto_sw_batch(model: torch.nn.Module, channels: int, settings: WindowSettings, device: torch.device,
                  amp_dtype: torch.dtype | None, budget: float = 0.5, limit: int = 32) -> int:
    """Windows per pass that fit in ``budget`` of the GPU's free memory, from one probe window's peak use."""
    if device.type != "cuda":
        return settings.sw_batch_size
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    probe = torch.zeros((1, channels, *settings.roi_size), device=device)
    with torch.no_grad(), autocast(device, amp_dtype):
        model(probe)
    per_window = max(torch.cuda.max_memory_allocated(device) - start, 1)
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(limit, int(budget * free // per_window)))
