"""The training loop: steps, periodic validation and checkpointing, progress display.

Optimisation pieces (model, loss, optimiser, schedule), validation and
checkpointing are passed in, so this file holds only the loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from segkit.runtime import autocast

Validate = Callable[[torch.nn.Module], dict[str, Any]]
SaveCheckpoint = Callable[[str, torch.nn.Module, dict[str, Any]], None]


@dataclass
class TrainState:
    """Counters and history that go into ``state.json``."""

    epoch: int = 0
    global_step: int = 0
    best_metric: float = -math.inf
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        best = None if math.isinf(self.best_metric) else self.best_metric
        return {"epoch": self.epoch, "global_step": self.global_step, "best_metric": best,
                "best_epoch": self.best_epoch, "history": self.history}


@dataclass
class Optimisation:
    """What a step needs: model, loss, optimiser, per-step LR schedule, device and autocast dtype."""

    model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    amp_dtype: torch.dtype | None = None
    grad_clip: float | None = None  # max global gradient norm
    accumulate: int = 1  # micro-batches per optimiser step
    ema: AveragedModel | None = None  # exponential moving average of the weights, validated and saved


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An EMA copy of ``model`` (parameters and buffers): w ← decay·w + (1 − decay)·w_model after each step
    (the first update copies the weights, as torch's AveragedModel does)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _groups(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive groups of ``size`` items (the last one may be shorter)."""
    group: list = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


class Trainer:
    """Runs epochs of ``steps_per_epoch`` steps; validates every ``val_every`` epochs."""

    def __init__(self, opt: Optimisation, validate: Validate, save: SaveCheckpoint, epochs: int, val_every: int,
                 console: Console | None = None) -> None:
        self.opt = opt
        self.validate = validate
        self.save = save
        self.epochs = epochs
        self.val_every = val_every
        self.console = console or Console()
        self.state = TrainState()

    def train_step(self, batches: list[dict[str, torch.Tensor]]) -> float:
        """One optimisation step over ``batches`` (gradients accumulated, then clipped); returns the mean loss."""
        opt = self.opt
        opt.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for batch in batches:
            image = batch["image"].to(opt.device, non_blocking=True)
            label = batch["label"].to(opt.device, non_blocking=True)
            with autocast(opt.device, opt.amp_dtype):
                loss = opt.loss_fn(opt.model(image), label) / len(batches)
            loss.backward()
            total += float(loss.detach())
        if opt.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(opt.model.parameters(), opt.grad_clip)
        opt.optimizer.step()
        opt.scheduler.step()
        if opt.ema is not None:
            opt.ema.update_parameters(opt.model)
        self.state.global_step += 1
        return total

    @property
    def evaluated_model(self) -> torch.nn.Module:
        """The weights that are validated and saved: the EMA copy when enabled."""
        return self.opt.ema.module if self.opt.ema is not None else self.opt.model

    def fit(self, loader: Iterable[dict[str, torch.Tensor]], steps_per_epoch: int) -> TrainState:
        """Train for all epochs; keeps ``last`` every epoch and ``best`` by mean foreground Dice."""
        self.opt.model.train()
        columns = (TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task("train", total=self.epochs * steps_per_epoch, epoch=1, loss=float("nan"))
            for epoch in range(self.state.epoch, self.epochs):
                started, losses = time.perf_counter(), []
                for batches in _groups(loader, self.opt.accumulate):
                    losses.append(self.train_step(batches))
                    progress.update(task, advance=1, epoch=epoch + 1, loss=sum(losses) / len(losses))
                record = {"epoch": epoch + 1, "loss": sum(losses) / max(len(losses), 1),
                          "lr": self.opt.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started}
                self._end_epoch(epoch, record, progress)
        return self.state

    def _end_epoch(self, epoch: int, record: dict[str, Any], progress: Progress) -> None:
        self.state.epoch = epoch + 1
        improved = False
        if (epoch + 1) % self.val_every == 0 or epoch + 1 == self.epochs:
            record.update(self.validate(self.evaluated_model))
            improved = not math.isnan(record["mean_dice"]) and record["mean_dice"] > self.state.best_metric
            if improved:
                self.state.best_metric, self.state.best_epoch = record["mean_dice"], epoch + 1
        self.state.history.append(record)
        if improved:
            self.save("best", self.evaluated_model, self.state.as_dict())
        self.save("last", self.evaluated_model, self.state.as_dict())
        dice = f"  val dice {record['mean_dice']:.4f}" if "mean_dice" in record else ""
        progress.console.print(f"epoch {epoch + 1}/{self.epochs}  loss {record['loss']:.4f}{dice}  "
                               f"({record['seconds']:.1f} s)")
