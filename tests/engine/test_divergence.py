"""The loop's bookkeeping of each step: the learning rate the step used, and a stop when training diverges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

from segkit.engine.run_log import RunLog
from segkit.engine.step import Optimisation
from segkit.engine.trainer import Schedule, Trainer
from segkit.errors import TrainingError


class RecordingLog(RunLog):
    """A disabled run log (no files) that keeps the records the trainer logs."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir, num_classes=2, enabled=False)
        self.steps: list[dict[str, Any]] = []
        self.validations: list[dict[str, Any]] = []

    def log_step(self, record: dict) -> None:
        self.steps.append(record)

    def log_validation(self, record: dict) -> None:
        self.validations.append(record)


def _trainer(tmp_path: Path, lr: float, saved: list[int], scaled: bool = False) -> Trainer:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    halving = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    opt = Optimisation(model, model, torch.nn.MSELoss(), optimizer, halving, torch.device("cpu"),
                       scaler=torch.amp.GradScaler("cpu") if scaled else None)
    trainer = Trainer(opt, Schedule(epochs=3, steps_per_epoch=2), lambda _model: {"mean_dice": 0.5},
                      save=lambda name, snap: saved.append(snap.state["global_step"]) if name == "last" else None,
                      log=RecordingLog(tmp_path), console=Console(quiet=True))
    return trainer


def _batches() -> Any:
    generator = torch.Generator().manual_seed(1)
    while True:
        yield {"image": torch.randn(8, 4, generator=generator), "label": 100 * torch.randn(8, 2, generator=generator)}


def test_each_step_logs_the_learning_rate_it_used(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, lr=0.01, saved=[])
    trainer.fit(_batches())
    assert [record["lr"] for record in trainer.log.steps] == pytest.approx([0.01 * 0.5**s for s in range(6)])
    assert [record["lr"] for record in trainer.log.validations] == pytest.approx([0.01 * 0.5**s for s in (1, 3, 5)])


def test_diverged_weights_stop_the_run_with_what_to_change(tmp_path: Path) -> None:
    saved: list[int] = []
    trainer = _trainer(tmp_path, lr=1e30, saved=saved)
    with pytest.raises(TrainingError) as error:
        trainer.fit(_batches())
    step = trainer.state.global_step
    assert step <= 4 and saved == ([2] if step > 2 else [])  # stopped within a step or two of the overflow
    assert f"training diverged at step {step}: the loss is " in str(error.value)
    assert "lower train.lr, set train.grad_clip or use train.precision: fp32" in str(error.value)
    assert ("last/ holds the run at step 2" in str(error.value)) == (step > 2)


def test_a_non_finite_loss_with_finite_weights_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fp16's gradient scaler skips a step whose loss overflowed: the weights stay finite and training goes on."""
    losses = iter([1.0, float("inf"), 1.0, 1.0, 1.0, 1.0])
    monkeypatch.setattr("segkit.engine.trainer.run_step", lambda opt, batches: next(losses))
    trainer = _trainer(tmp_path, lr=0.01, saved=[], scaled=True)
    assert trainer.fit(_batches()).global_step == 6


def test_an_fp16_run_whose_every_step_overflows_stops_instead_of_training_on(tmp_path: Path) -> None:
    """Before: the scaler skipped all 40 steps (scale 65536 → 4e-8), the weights never changed and the run ended as if
    trained. A forward pass that overflows float16 gives a NaN loss at every step, which no loss scale can fix."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    initial = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    opt = Optimisation(model, model, torch.nn.MSELoss(), optimizer,
                       torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0), torch.device("cpu"),
                       torch.float16, scaler=torch.amp.GradScaler("cpu"))
    trainer = Trainer(opt, Schedule(epochs=1, steps_per_epoch=40), lambda _model: {"mean_dice": 0.5},
                      save=lambda name, snap: None, log=RecordingLog(tmp_path), console=Console(quiet=True))
    huge = ({"image": 1e6 * batch["image"], "label": batch["label"]} for batch in _batches())  # > float16's 65504
    with pytest.raises(TrainingError) as error:
        trainer.fit(huge)
    assert trainer.state.global_step == 17  # 65536 halved 17 times falls below 1
    assert "training stalled at step 17: fp16's gradient scaler skipped step after step" in str(error.value)
    assert "set train.precision: fp32" in str(error.value) and "\n" not in str(error.value)
    assert all(torch.equal(a, b) for a, b in zip(initial, model.parameters(), strict=True))


def test_a_skipped_first_fp16_step_moves_the_schedule_on_without_torchs_order_warning() -> None:
    """torch warns "Detected call of `lr_scheduler.step()` before `optimizer.step()`" when the scaler skips the first
    step; segkit's schedule counts the steps taken, skipped ones included (docs/TRAINING.md), so that warning only
    alarmed users of fp16 runs."""
    import warnings

    from segkit.engine.step import run_step

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    halving = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    opt = Optimisation(model, model, torch.nn.MSELoss(), optimizer, halving, torch.device("cpu"), torch.float16,
                       scaler=torch.amp.GradScaler("cpu"))
    batch = next(_batches())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_step(opt, [{"image": 1e6 * batch["image"], "label": batch["label"]}])  # overflows: skipped
    assert opt.scaler.get_scale() == 32768.0  # the step was skipped
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.005)  # and the schedule moved on
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
