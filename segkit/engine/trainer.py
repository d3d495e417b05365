"""The training loop: steps, periodic validation, checkpoints and logs.

The pieces are passed in — optimisation (:mod:`segkit.engine.step`), validation (a callable),
checkpoint saving (a callable taking a :class:`Snapshot`) and the run log — so this file holds
only the loop and the state that an exact resume needs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from rich.console import Console

from segkit.engine.checkpoint import Snapshot, cpu_state_dict
from segkit.engine.optim import apply_current_settings
from segkit.engine.progress import training_progress
from segkit.engine.rng import capture_rng, restore_rng
from segkit.engine.run_log import RunLog
from segkit.engine.step import Optimisation, run_step
from segkit.errors import TrainingError

Validate = Callable[[torch.nn.Module], dict[str, Any]]
SaveCheckpoint = Callable[[str, Snapshot], None]


@dataclass
class TrainState:
    """Counters, the running epoch's sums and the validation history (``state.json``)."""

    epoch: int = 0  # completed epochs
    global_step: int = 0  # completed optimiser steps
    best_metric: float = -math.inf
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_loss_sum: float = 0.0
    epoch_steps: int = 0
    epoch_seconds: float = 0.0
    processes: int = 1  # ranks the run trains on: the global batch and the sample streams depend on it

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        state = asdict(self)
        state["best_metric"] = None if math.isinf(self.best_metric) else self.best_metric
        return state

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        """The inverse of :meth:`as_dict` (unknown keys ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if known.get("best_metric") is None:
            known["best_metric"] = -math.inf
        return cls(**known)


@dataclass(frozen=True)
class Schedule:
    """How long to train and when to validate and save."""

    epochs: int
    steps_per_epoch: int
    val_every: int = 1
    checkpoint_every: int = 0  # also save ``last`` every N steps (0: at epoch ends only)
    stop_at_dice: float | None = None  # end the run at the first validation whose mean Dice reaches this

    @property
    def total_steps(self) -> int:
        """Optimiser steps in the whole run."""
        return self.epochs * self.steps_per_epoch


class Trainer:
    """Runs the schedule from ``state.global_step``; validates and saves at epoch ends."""

    def __init__(self, opt: Optimisation, schedule: Schedule, validate: Validate, save: SaveCheckpoint,
                 log: RunLog, console: Console | None = None, is_main: bool = True,
                 reduce: Callable[[float], float] = lambda value: value,
                 sync: Callable[[], None] = lambda: None) -> None:
        self.opt, self.schedule, self.validate, self.save, self.log = opt, schedule, validate, save, log
        self.console = console or Console()
        self.is_main, self.reduce, self.sync = is_main, reduce, sync  # sync: make all ranks' models identical
        self.state = TrainState()
        self._step_lr = self._lr()  # the learning rate of the latest step
        self._saved_step = 0  # the step last/ was saved at by this process (0: not yet)

    def snapshot(self, resumable: bool) -> Snapshot:
        """The checkpoint content now; ``resumable`` adds what an exact resume needs."""
        opt = self.opt
        if not resumable:
            return Snapshot(cpu_state_dict(opt.evaluated), self.state.as_dict())
        resume = {"optimizer": opt.optimizer.state_dict(), "scheduler": opt.scheduler.state_dict(),
                  "rng": capture_rng()}
        if opt.scaler is not None:
            resume["scaler"] = opt.scaler.state_dict()
        if opt.ema is not None:
            resume["ema_count"] = opt.ema.n_averaged.detach().cpu()
        raw = cpu_state_dict(opt.module) if opt.ema is not None else None
        return Snapshot(cpu_state_dict(opt.evaluated), self.state.as_dict(), raw, resume)

    def restore(self, weights: dict[str, torch.Tensor], train_weights: dict[str, torch.Tensor] | None,
                resume: dict[str, Any], state: dict[str, Any]) -> None:
        """Continue from a resumable snapshot written by :meth:`snapshot`."""
        opt = self.opt
        opt.module.load_state_dict(train_weights if train_weights is not None else weights)
        if opt.ema is not None and "ema_count" in resume:
            opt.ema.module.load_state_dict(weights)
            opt.ema.n_averaged.copy_(resume["ema_count"])
        elif opt.ema is not None:  # train.ema set at the resume: the average starts from the resumed weights
            opt.ema.module.load_state_dict(opt.module.state_dict())
        opt.optimizer.load_state_dict(resume["optimizer"])
        opt.scheduler.load_state_dict(resume["scheduler"])
        apply_current_settings(opt.optimizer, opt.scheduler)
        if opt.scaler is not None and "scaler" in resume:
            opt.scaler.load_state_dict(resume["scaler"])
        restore_rng(resume["rng"])
        self.state = TrainState.from_dict(state)
        self._saved_step = self.state.global_step

    def fit(self, loader: Iterable[dict[str, torch.Tensor]]) -> TrainState:
        """Train until the schedule's last step; ``loader`` yields micro-batches from the current step on."""
        self.opt.model.train()
        stream: Iterator = iter(loader)
        schedule, state = self.schedule, self.state
        with training_progress(self.console, self.is_main) as progress:
            task = progress.add_task("train", total=schedule.total_steps, completed=state.global_step,
                                     epoch=state.epoch + 1, loss=float("nan"), lr=self._lr(), dice=self._last_dice())
            mark = time.perf_counter()
            while not self.is_finished():
                lr = self._lr()  # the rate this step uses: the scheduler moves on inside run_step
                loss = self.reduce(run_step(self.opt, [next(stream) for _ in range(self.opt.accumulate)]))
                now = time.perf_counter()
                self._count_step(loss, now - mark, lr)
                if not math.isfinite(loss):
                    self._refuse_diverged(loss, lr)
                self._refuse_stalled_scaler(lr)
                progress.update(task, completed=state.global_step, epoch=state.epoch + 1, lr=lr,
                                 loss=state.epoch_loss_sum / state.epoch_steps)
                if state.global_step % schedule.steps_per_epoch == 0:
                    self._end_epoch(progress)
                    progress.update(task, dice=self._last_dice())
                elif schedule.checkpoint_every and state.global_step % schedule.checkpoint_every == 0:
                    self.sync()
                    self._save_last()
                mark = time.perf_counter()
        return state

    def _save_last(self) -> None:
        self.save("last", self.snapshot(resumable=True))
        self._saved_step = self.state.global_step

    def is_finished(self) -> bool:
        """Whether the schedule has no step left (its last step done, or ``stop_at_dice`` reached)."""
        return self.state.global_step >= self.schedule.total_steps or self.reached_target()

    def reached_target(self) -> bool:
        """Whether ``stop_at_dice`` is set and the latest validation's mean Dice reached it (NaN never does)."""
        target, dice = self.schedule.stop_at_dice, self._latest_dice()
        return target is not None and dice is not None and dice >= target

    def _lr(self) -> float:
        return float(self.opt.optimizer.param_groups[0]["lr"])

    def _latest_dice(self) -> float | None:
        """The mean Dice of the latest validation (None before the first)."""
        return next((r["mean_dice"] for r in reversed(self.state.history) if r.get("mean_dice") is not None), None)

    def _last_dice(self) -> str:
        dice = self._latest_dice()
        return "–" if dice is None else f"{dice:.4f}"

    def _count_step(self, loss: float, seconds: float, lr: float) -> None:
        state = self.state
        state.global_step += 1
        state.epoch_loss_sum += loss
        state.epoch_steps += 1
        state.epoch_seconds += seconds
        self._step_lr = lr
        self.log.log_step({"step": state.global_step, "epoch": state.epoch + 1, "loss": loss, "lr": lr,
                           "seconds": seconds})

    def _refuse_diverged(self, loss: float, lr: float) -> None:
        """A non-finite loss is survivable only while the weights are finite (fp16's gradient scaler skips such
        steps); once they are not, every later step is NaN too: stop with what to change instead of training on."""
        if all(torch.isfinite(p).all() for p in self.opt.module.parameters()):
            return
        saved = f"; last/ holds the run at step {self._saved_step}" if self._saved_step else ""
        raise TrainingError(f"training diverged at step {self.state.global_step}: the loss is {loss} and the weights "
                            f"are no longer finite (learning rate {lr:g}) — lower train.lr, set train.grad_clip "
                            f"or use train.precision: fp32, then train again{saved}")

    def _refuse_stalled_scaler(self, lr: float) -> None:
        """fp16's gradient scaler halves its scale at each step it skips (non-finite gradients) and doubles it only
        after 2000 clean ones. Below 1 it has skipped step after step: the loss or the gradients overflow float16
        even unscaled, every step is skipped and the weights no longer change — stop instead of training on."""
        scaler = self.opt.scaler
        if scaler is None or scaler.get_scale() >= 1.0:
            return
        saved = f"; last/ holds the run at step {self._saved_step}" if self._saved_step else ""
        raise TrainingError(f"training stalled at step {self.state.global_step}: fp16's gradient scaler skipped step "
                            f"after step (its scale fell to {scaler.get_scale():g}), so the weights stopped changing: "
                            f"the loss or the gradients overflow float16 (learning rate {lr:g}) — set "
                            f"train.precision: fp32 (or bf16 on a GPU that has it) or lower train.lr, then train "
                            f"again{saved}")

    def _end_epoch(self, progress: Any) -> None:
        state, epoch = self.state, self.state.epoch + 1
        record = {"epoch": epoch, "step": state.global_step, "train_loss": state.epoch_loss_sum / state.epoch_steps,
                  "lr": self._step_lr, "seconds": state.epoch_seconds}
        state.epoch, state.epoch_loss_sum, state.epoch_steps, state.epoch_seconds = epoch, 0.0, 0, 0.0
        self.sync()
        improved = False
        if epoch % self.schedule.val_every == 0 or epoch == self.schedule.epochs:
            started = time.perf_counter()
            record.update(self.validate(self.opt.evaluated))
            record["val_seconds"] = time.perf_counter() - started
            self.log.log_validation(record)
            improved = _finite(record.get("mean_dice")) and record["mean_dice"] > state.best_metric
            if improved:
                state.best_metric, state.best_epoch = record["mean_dice"], epoch
        state.history.append(record)
        if improved:
            self.save("best", self.snapshot(resumable=False))
        self._save_last()
        dice = f"  val dice {record['mean_dice']:.4f}" if _finite(record.get("mean_dice")) else ""
        validated = f", validation {record['val_seconds']:.1f} s" if "val_seconds" in record else ""
        if self.is_main:
            progress.console.print(f"epoch {epoch}/{self.schedule.epochs}  loss {record['train_loss']:.4f}{dice}  "
                                   f"(training {record['seconds']:.1f} s{validated})")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
