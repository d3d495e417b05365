"""A resumed run: exact at every step, and it goes on with the ``--set`` values of the keys it may change."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

import segkit.engine.trainer as trainer_module
from segkit.config import Config, TrainCfg
from segkit.engine.losses import build_loss
from segkit.engine.optim import build_optimizer, build_scheduler, lr_factor
from segkit.engine.run_log import RunLog
from segkit.engine.step import Optimisation, make_ema, make_scaler
from segkit.engine.trainer import Schedule, Trainer, TrainState
from segkit.errors import ConfigError


class Recorder(RunLog):
    """A disabled run log that keeps the step records."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir, num_classes=3, enabled=False)
        self.steps: list[dict[str, Any]] = []

    def log_step(self, record: dict) -> None:
        self.steps.append(record)


def _batches(micro: int, overflowing: tuple[int, ...] = ()) -> Iterator[dict[str, torch.Tensor]]:
    """Micro-batch ``n`` is a function of ``n`` only, as the training stream is; those in ``overflowing`` hold an
    infinite voxel (fp16's scaler skips their step and halves its scale)."""
    while True:
        generator = torch.Generator().manual_seed(micro)
        image = torch.randn(2, 2, 4, 4, 4, generator=generator)
        if micro in overflowing:
            image[0, 0, 0, 0, 0] = float("inf")
        yield {"image": image, "label": torch.randint(0, 3, (2, 1, 4, 4, 4), generator=generator)}
        micro += 1


def _trainer(tmp_path: Path, cfg: TrainCfg, saved: dict, amp: torch.dtype | None = None) -> Trainer:
    torch.manual_seed(0)
    model = torch.nn.Conv3d(2, 3, 1)
    optimizer = build_optimizer(model, cfg)
    device = torch.device("cpu")
    opt = Optimisation(model, model, build_loss("dice_ce"), optimizer, build_scheduler(optimizer, cfg), device, amp,
                       cfg.grad_clip, cfg.accumulate, make_ema(model, cfg.ema) if cfg.ema else None,
                       make_scaler(device, amp))

    def save(name: str, snapshot: Any) -> None:  # resume.pt's round trip, as the checkpoint writes and reads it
        buffer = io.BytesIO()
        torch.save(snapshot.resume, buffer)
        saved[name] = (snapshot, buffer.getvalue())

    return Trainer(opt, Schedule(cfg.epochs, cfg.steps_per_epoch, val_every=2, checkpoint_every=1),
                   lambda model: {"mean_dice": float(next(model.parameters()).detach().sum())}, save,
                   Recorder(tmp_path), Console(quiet=True))


def _resume(tmp_path: Path, cfg: TrainCfg, saved: dict, amp: torch.dtype | None = None,
            overflowing: tuple[int, ...] = ()) -> Trainer:
    snapshot, blob = saved["last"]
    trainer = _trainer(tmp_path, cfg, {}, amp)
    trainer.restore(snapshot.weights, snapshot.train_weights, torch.load(io.BytesIO(blob), weights_only=True),
                    snapshot.state)
    trainer.fit(_batches(trainer.state.global_step * cfg.accumulate, overflowing))
    return trainer


def _interrupted(tmp_path: Path, cfg: TrainCfg, steps: int, monkeypatch: pytest.MonkeyPatch,
                 amp: torch.dtype | None = None, overflowing: tuple[int, ...] = ()) -> dict:
    saved: dict = {}
    real, calls = trainer_module.run_step, {"n": 0}

    def counting(opt: Optimisation, batches: list) -> float:
        if calls["n"] == steps:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(opt, batches)

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "run_step", counting)
        with pytest.raises(KeyboardInterrupt):
            _trainer(tmp_path, cfg, saved, amp).fit(_batches(0, overflowing))
    return saved


@pytest.mark.parametrize("amp", [None, torch.float16])
def test_a_run_killed_after_any_step_resumes_exactly_with_accumulation_ema_clipping_and_a_scaler(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amp: torch.dtype | None) -> None:
    cfg = TrainCfg(epochs=3, steps_per_epoch=2, accumulate=2, ema=0.9, grad_clip=0.5, warmup_steps=2, lr=0.05)
    reference = _trainer(tmp_path, cfg, {}, amp)
    reference.fit(_batches(0))
    for steps in range(1, cfg.epochs * cfg.steps_per_epoch):
        resumed = _resume(tmp_path, cfg, _interrupted(tmp_path, cfg, steps, monkeypatch, amp), amp)
        for name, expected in reference.opt.module.state_dict().items():
            assert torch.equal(resumed.opt.module.state_dict()[name], expected), (steps, name)
        for name, expected in reference.opt.evaluated.state_dict().items():
            assert torch.equal(resumed.opt.evaluated.state_dict()[name], expected), (steps, name)
        assert (resumed.state.best_metric, resumed.state.best_epoch) == (reference.state.best_metric,
                                                                         reference.state.best_epoch)


def test_a_resume_restores_the_gradient_scale_an_overflow_halved(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above passes without the scaler's state (no step of it overflows, so every scale stays 65536);
    here the first step overflows, and a resume from the scaler's initial state would go on at twice the scale."""
    cfg = TrainCfg(epochs=2, steps_per_epoch=2, ema=0.9, lr=0.05)
    reference = _trainer(tmp_path, cfg, {}, torch.float16)
    reference.fit(_batches(0, overflowing=(0,)))
    assert reference.opt.scaler.get_scale() == 2.0**15  # the overflowing step was skipped
    resumed = _resume(tmp_path, cfg, _interrupted(tmp_path, cfg, 2, monkeypatch, torch.float16, (0,)),
                      torch.float16, (0,))
    assert resumed.opt.scaler.state_dict() == reference.opt.scaler.state_dict()
    for name, expected in reference.opt.evaluated.state_dict().items():
        assert torch.equal(resumed.opt.evaluated.state_dict()[name], expected), name


def test_a_resume_goes_on_with_the_current_lr_weight_decay_and_schedule_length(tmp_path: Path) -> None:
    first = TrainCfg(epochs=1, steps_per_epoch=2, lr=0.01, optimizer="sgd", momentum=0.9, weight_decay=0.0)
    saved: dict = {}
    _trainer(tmp_path, first, saved).fit(_batches(0))
    longer = first.model_copy(update={"epochs": 2, "lr": 0.1, "weight_decay": 0.001})
    resumed = _resume(tmp_path, longer, saved)
    # before: step 3 used the finished schedule's rate 0 and step 4 the old train.lr; weight decay stayed 0
    expected = [0.1 * lr_factor(step, 4, 0, "poly") for step in (2, 3)]
    assert [record["lr"] for record in resumed.log.steps] == pytest.approx(expected)
    assert resumed.opt.optimizer.param_groups[0]["weight_decay"] == 0.001


def test_ema_switched_on_at_a_resume_starts_from_the_resumed_weights(tmp_path: Path) -> None:
    cfg = TrainCfg(epochs=1, steps_per_epoch=2, lr=0.01)
    saved: dict = {}
    _trainer(tmp_path, cfg, saved).fit(_batches(0))
    trained = saved["last"][0].weights
    with_ema = cfg.model_copy(update={"epochs": 2, "ema": 0.5})
    snapshot, blob = saved["last"]
    trainer = _trainer(tmp_path, with_ema, {})
    trainer.restore(snapshot.weights, snapshot.train_weights, torch.load(io.BytesIO(blob), weights_only=True),
                    snapshot.state)  # before: KeyError 'ema_count'
    for name, value in trained.items():
        assert torch.equal(trainer.opt.ema.module.state_dict()[name], value), name


@pytest.mark.parametrize(("key", "section", "change"), [
    ("train.optimizer", "train", {"optimizer": "sgd"}),  # before: KeyError 'momentum' at the first step
    ("train.steps_per_epoch", "train", {"steps_per_epoch": 3}),  # before: epochs of other lengths, "epoch 4/3"
    ("seed", None, {"seed": 1}),  # before: another sample stream whenever the split came out the same
])
def test_a_resume_that_changes_a_key_the_run_keeps_is_refused_in_one_line(key: str, section: str | None,
                                                                          change: dict) -> None:
    from segkit.pipelines.train import _same_network_and_inputs

    saved = Config()
    changed = saved.model_copy(update={section: getattr(saved, section).model_copy(update=change)} if section
                               else change)
    with pytest.raises(ConfigError, match=rf"^{key}: the run in run was trained with .*, now .* a resumed run keeps"):
        _same_network_and_inputs(saved, changed, Path("run"))
    longer = saved.model_copy(update={"train": saved.train.model_copy(update={"epochs": 500, "lr": 0.01})})
    _same_network_and_inputs(saved, longer, Path("run"))


def test_a_run_without_a_finite_validation_dice_does_not_name_a_best_checkpoint() -> None:
    from segkit.pipelines.train import closing_line

    # before: "best mean foreground Dice -inf at epoch -1; checkpoint run/best", a folder that was never written
    assert closing_line(TrainState(), Path("run")) == (
        "no validation gave a mean foreground Dice (no foreground class in the validation labels nor in the "
        f"predictions), so there is no best/ checkpoint; the trained model is {Path('run') / 'last'}")
    best = TrainState(best_metric=0.5, best_epoch=3)
    assert closing_line(best, Path("run")) == ("best mean foreground Dice 0.5000 at epoch 3; checkpoint "
                                               f"{Path('run') / 'best'}")
