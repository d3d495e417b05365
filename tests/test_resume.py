"""Exact resume: a run interrupted after any step and resumed ends with the uninterrupted run's weights."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from safetensors.torch import load_file
from segkit.pipelines.train import _same_network_and_inputs, resumed_config, run_training

import segkit.engine.trainer as trainer_module
from segkit.config import Config, DataCfg, InferCfg, ModelCfg, TrainCfg
from segkit.engine.checkpoint import load_checkpoint
from segkit.engine.run_log import read_metrics
from segkit.errors import ConfigError

EPOCHS, STEPS = 2, 2


def _cfg(root: Path, run_dir: Path, **train: object) -> Config:
    return Config(
        run_dir=run_dir,
        data=DataCfg(root=root, spacing=(1.2, 1.2, 2.5), val_fraction=0.25),
        model=ModelCfg(encoder="resnet18", decoder_channels=(32, 16, 16, 8, 8), norm="batch"),
        train=TrainCfg(epochs=EPOCHS, steps_per_epoch=STEPS, batch_size=2, patch_size=(32, 32, 16), lr=3e-3,
                       checkpoint_every=1, warmup_steps=2, **train),
        infer=InferCfg(roi_size=(32, 32, 16), sw_batch_size=2),
        seed=5,
    )


class Interrupted(Exception):
    """Stands in for a kill between steps."""


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, steps: int) -> None:
    real, calls = trainer_module.run_step, {"n": 0}

    def counting(opt, batches):
        if calls["n"] == steps:
            raise Interrupted
        calls["n"] += 1
        return real(opt, batches)

    monkeypatch.setattr(trainer_module, "run_step", counting)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    last = run_dir / "last"
    raw = last / "train_weights.safetensors"
    return load_file(str(raw if raw.is_file() else last / "weights.safetensors"))


@pytest.fixture(scope="module")
def reference(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run (with EMA, so both raw and averaged weights are compared)."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_training(_cfg(tiny_dataset, run_dir, ema=0.8))
    return run_dir


@pytest.mark.parametrize("stop_after", [1, 2])  # mid-epoch, and right after an epoch end with validation
def test_interrupted_and_resumed_run_ends_with_identical_weights(reference: Path, tiny_dataset: Path,
                                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 stop_after: int) -> None:
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, stop_after)
        with pytest.raises(Interrupted):
            run_training(_cfg(tiny_dataset, run_dir, ema=0.8))
    assert json.loads((run_dir / "last" / "state.json").read_text())["global_step"] == stop_after
    console = Console(file=io.StringIO(), width=200)
    result = run_training(resumed_config(run_dir, ["train.surface_metrics=false"]), resume=True,  # Dice only
                          console=console)
    assert result.state.global_step == EPOCHS * STEPS
    assert f"resuming {run_dir} at step {stop_after} " in console.file.getvalue()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert saved["train"]["surface_metrics"] is False  # the run's config.yaml says how it went on
    for name, expected in _weights(reference).items():
        assert torch.allclose(_weights(run_dir)[name], expected, rtol=0, atol=1e-6), name
    ema_ref, ema_resumed = load_checkpoint(reference / "last"), load_checkpoint(run_dir / "last")
    for name, expected in ema_ref.weights.items():
        assert torch.allclose(ema_resumed.weights[name], expected, rtol=0, atol=1e-6), name
    steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "step"]
    assert steps == list(range(1, EPOCHS * STEPS + 1))  # no step logged twice after the resume
    reference_losses = [r["loss"] for r in read_metrics(reference / "metrics.jsonl") if r["kind"] == "step"]
    resumed_losses = [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "step"]
    assert resumed_losses == pytest.approx(reference_losses, abs=1e-6)
    assert ema_resumed.state["best_metric"] == pytest.approx(ema_ref.state["best_metric"], abs=1e-6)


def test_resume_without_a_checkpoint_is_a_clear_error(tiny_dataset: Path, tmp_path: Path) -> None:
    from segkit.errors import SegkitError

    with pytest.raises(SegkitError, match=r"nothing: no such folder"):
        resumed_config(tmp_path / "nothing", [])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SegkitError, match=r"empty: no config\.yaml, so not a segkit run directory"):
        resumed_config(tmp_path / "empty", [])


def test_a_resume_may_move_the_dataset_and_change_how_it_is_loaded_but_not_what_the_model_sees() -> None:
    saved = Config()
    moved = DataCfg(root=Path("/mnt/elsewhere"), num_workers=4, cache="disk", cache_dir=Path("/tmp/c"))
    _same_network_and_inputs(saved, saved.model_copy(update={"data": moved}), Path("run"))
    for change in ({"spacing": (1.0, 1.0, 1.0)}, {"normalize": "mri"}, {"fold": 1}, {"orientation": "LPS"}):
        changed = saved.model_copy(update={"data": saved.data.model_copy(update=change)})
        with pytest.raises(ConfigError, match=f"data.{next(iter(change))}: the run in run was trained with"):
            _same_network_and_inputs(saved, changed, Path("run"))
