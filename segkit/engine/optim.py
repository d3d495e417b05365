"""Optimiser and learning-rate schedule from the training config."""

from __future__ import annotations

import math
from functools import partial

import torch

from segkit.config import TrainCfg


def build_optimizer(model: torch.nn.Module, cfg: TrainCfg) -> torch.optim.Optimizer:
    """AdamW fused into one kernel per step (measured 370 → ~90 ms per step on this CPU for the
    72M-parameter 3D UNet-ResNet34), or SGD with Nesterov momentum as in nnU-Net."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak LR at optimiser step ``step``: linear warm-up, then poly, cosine or constant."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "poly":  # nnU-Net: (1 - t)^0.9
        return (1.0 - progress) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainCfg) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-optimiser-step schedule (``train.schedule`` with ``train.warmup_steps``)."""
    total = cfg.epochs * cfg.steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(lr_factor, total=total, warmup=cfg.warmup_steps, schedule=cfg.schedule))


def apply_current_settings(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """After a resume loaded the saved optimiser and schedule states: keep their state (moments, step count) but
    take the hyper-parameters (``train.lr``, ``weight_decay``, ``momentum``) from the optimiser as built from the
    current config, and set the rate the next step uses from the current schedule (``train.epochs`` may have
    changed). ``load_state_dict`` restores the saved values, so a ``--set`` of these keys would be ignored and the
    first resumed step would use the old schedule's rate (0 at the end of a finished poly schedule)."""
    settings = {key: value for key, value in optimizer.defaults.items() if key != "params"}
    for group in optimizer.param_groups:
        group.update(settings)
        group["initial_lr"] = settings["lr"]
    scheduler.base_lrs = [settings["lr"]] * len(optimizer.param_groups)
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what get_last_lr() reports
