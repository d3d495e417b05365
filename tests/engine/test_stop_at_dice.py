"""``train.stop_at_dice``: the run ends at the first validation whose mean Dice reaches the target."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rich.console import Console

import segkit.engine.trainer as trainer_module
from segkit.config import TrainCfg
from segkit.engine.run_log import RunLog
from segkit.engine.step import Optimisation
from segkit.engine.trainer import Schedule, Trainer

DICE_BY_EPOCH = [0.5, 0.8, 0.91, 0.95, 0.97]


def _trainer(tmp_path: Path, stop_at_dice: float | None, saved: list[str]) -> Trainer:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = Optimisation(model, model, torch.nn.MSELoss(), optimizer,
                       torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0), torch.device("cpu"))
    calls = {"n": 0}

    def validate(_model: torch.nn.Module) -> dict[str, float]:
        calls["n"] += 1
        return {"mean_dice": DICE_BY_EPOCH[calls["n"] - 1]}

    schedule = Schedule(epochs=len(DICE_BY_EPOCH), steps_per_epoch=2, stop_at_dice=stop_at_dice)
    log = RunLog(tmp_path, num_classes=2, enabled=False)  # no files, no TensorBoard writer: fast
    return Trainer(opt, schedule, validate, save=lambda name, snap: saved.append(name), log=log,
                   console=Console(quiet=True))


@pytest.mark.parametrize(("target", "epochs"), [(0.9, 3), (0.95, 4), (None, 5), (0.99, 5)])
def test_training_stops_at_the_first_validation_reaching_the_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: float | None, epochs: int) -> None:
    monkeypatch.setattr(trainer_module, "run_step", lambda opt, batches: 0.0)
    saved: list[str] = []
    trainer = _trainer(tmp_path, target, saved)
    state = trainer.fit(iter(lambda: {}, None))
    trainer.log.close()
    assert state.epoch == epochs
    assert state.global_step == 2 * epochs
    assert saved.count("last") == epochs  # the stopping epoch is saved like any other


def test_a_resumed_run_that_already_reached_the_target_does_not_train_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer_module, "run_step", lambda opt, batches: 0.0)
    first = _trainer(tmp_path / "a", 0.9, [])
    state = first.fit(iter(lambda: {}, None))
    first.log.close()
    again = _trainer(tmp_path / "b", 0.9, [])
    again.state = type(state).from_dict(state.as_dict())
    assert again.fit(iter(lambda: {}, None)).global_step == state.global_step


def test_the_target_must_be_a_dice_value() -> None:
    with pytest.raises(ValueError, match="stop_at_dice"):
        TrainCfg(stop_at_dice=1.5)
