"""One optimisation step: micro-batches under autocast, gradient scaling, clipping, the optimiser and EMA."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from segkit.runtime import autocast, channels_last_format


@dataclass
class Optimisation:
    """What a step needs.

    ``model`` is what the forward pass runs (possibly wrapped by DDP and/or ``torch.compile``);
    ``module`` is the plain model whose weights are saved.
    """

    model: torch.nn.Module
    module: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    amp_dtype: torch.dtype | None = None
    grad_clip: float | None = None  # max global gradient norm
    accumulate: int = 1  # micro-batches per optimiser step
    ema: AveragedModel | None = None  # exponential moving average of the weights, validated and saved
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    channels_last: bool = False

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights that are validated and saved: the EMA copy when enabled."""
        return self.ema.module if self.ema is not None else self.module


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An EMA copy of ``model`` (parameters and buffers): w ← decay·w + (1 − decay)·w_model after each step
    (the first update copies the weights, as torch's AveragedModel does). Integer buffers (batch norm's
    ``num_batches_tracked``) are copied: torch's EMA blends and truncates them, which froze the count at 1."""
    return AveragedModel(model, multi_avg_fn=_ema_update(decay), use_buffers=True)


def _ema_update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """torch's EMA update for floating-point tensors; a copy for the others (AveragedModel groups them by dtype)."""
    blend = get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], count: torch.Tensor) -> None:
        if averaged[0].is_floating_point() or averaged[0].is_complex():
            blend(averaged, current, count)
        else:
            for mine, theirs in zip(averaged, current, strict=True):
                mine.copy_(theirs)

    return update


def make_scaler(device: torch.device, amp_dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 autocast (bf16 and fp32 have the range to do without)."""
    return torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None


def _inputs(opt: Optimisation, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    image = batch["image"].to(opt.device, non_blocking=True)
    label = batch["label"].to(opt.device, non_blocking=True)
    if opt.channels_last:
        image = image.contiguous(memory_format=channels_last_format(image.ndim - 2))
    return image, label


def run_step(opt: Optimisation, batches: list[dict[str, torch.Tensor]]) -> float:
    """One optimiser step over ``batches`` (gradients accumulated; DDP syncs only on the last); the mean loss."""
    opt.optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=opt.device)
    for index, batch in enumerate(batches):
        image, label = _inputs(opt, batch)
        last = index == len(batches) - 1
        no_sync = getattr(opt.model, "no_sync", None)
        with contextlib.nullcontext() if last or no_sync is None else no_sync():
            with autocast(opt.device, opt.amp_dtype):
                loss = opt.loss_fn(opt.model(image), label) / len(batches)
            (opt.scaler.scale(loss) if opt.scaler is not None else loss).backward()
        total += loss.detach().float()
    if opt.scaler is not None:
        opt.scaler.unscale_(opt.optimizer)
    if opt.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(opt.module.parameters(), opt.grad_clip)
    if opt.scaler is not None:
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
    else:
        opt.optimizer.step()
    with warnings.catch_warnings():  # a step fp16's scaler skipped still moves the schedule on (docs/TRAINING.md)
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        opt.scheduler.step()
    if opt.ema is not None:
        opt.ema.update_parameters(opt.module)
    return float(total)
