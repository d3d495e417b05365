"""Optimisers, LR schedules, gradient accumulation and clipping, weighted cross-entropy."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
from torch import nn

from segkit.config import Config, ModelCfg, TrainCfg
from segkit.engine.losses import build_loss
from segkit.engine.optim import build_optimizer, build_scheduler, lr_factor
from segkit.engine.step import Optimisation, make_ema, run_step
from segkit.errors import ConfigError


def test_schedules_warm_up_then_decay() -> None:
    assert [lr_factor(s, 100, 4, "poly") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 100, 4, "poly") == 1.0 and lr_factor(100, 100, 4, "poly") == 0.0
    assert lr_factor(52, 100, 4, "cosine") == pytest.approx(0.5)
    assert lr_factor(30, 100, 0, "poly") == pytest.approx(0.7**0.9)
    assert lr_factor(99, 100, 0, "constant") == 1.0
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = build_scheduler(optimizer, TrainCfg(epochs=1, steps_per_epoch=10, schedule="cosine", warmup_steps=2))
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[:2] == [1.0, 2.0] and seen[2] == pytest.approx(2.0) and seen[-1] < 0.1
    assert all(a >= b for a, b in pairwise(seen[1:]))


def test_sgd_is_nesterov_and_adamw_is_the_default() -> None:
    model = nn.Linear(2, 2)
    sgd = build_optimizer(model, TrainCfg(optimizer="sgd", momentum=0.9))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert isinstance(build_optimizer(model, TrainCfg()), torch.optim.AdamW)


def _opt(model: nn.Module, accumulate: int = 1, clip: float | None = None) -> Optimisation:
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return Optimisation(model, model, build_loss("ce"), optimizer, scheduler, torch.device("cpu"), None, clip,
                        accumulate)


def _batch(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(2, 2, 4, 4, 4, generator=generator),
            "label": torch.randint(0, 3, (2, 1, 4, 4, 4), generator=generator)}


def test_accumulated_micro_batches_equal_one_large_batch() -> None:
    torch.manual_seed(0)
    reference = nn.Conv3d(2, 3, 1)
    accumulated = nn.Conv3d(2, 3, 1)
    accumulated.load_state_dict(reference.state_dict())
    first, second = _batch(1), _batch(2)
    together = {k: torch.cat([first[k], second[k]]) for k in first}
    run_step(_opt(reference), [together])
    run_step(_opt(accumulated, accumulate=2), [first, second])
    torch.testing.assert_close(accumulated.weight, reference.weight)


def test_gradient_clipping_bounds_the_update() -> None:
    model = nn.Conv3d(2, 3, 1)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    run_step(_opt(model, clip=1e-3), [_batch(3)])
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert math.isclose(float((after - before).norm()), 1e-3, rel_tol=1e-3)  # lr 1: the update is the clipped grad


def test_weighted_cross_entropy_and_its_config_check() -> None:
    logits, label = torch.randn(2, 3, 4, 4, 4), torch.randint(0, 3, (2, 1, 4, 4, 4))
    weights = [0.2, 1.0, 3.0]
    expected = nn.functional.cross_entropy(logits, label[:, 0], weight=torch.tensor(weights))
    torch.testing.assert_close(build_loss("ce", class_weights=weights)(logits, label), expected)
    with pytest.raises(ValueError, match=r"class_weights needs train\.loss: ce"):
        Config(model=ModelCfg(num_classes=3), train=TrainCfg(class_weights=(1.0, 1.0, 1.0)))
    with pytest.raises(ConfigError, match=r"train\.class_weights"):
        from segkit.config import load_config

        load_config("unet_resnet34.yaml", ["train.loss=ce", "train.class_weights=[1, 2]"])


def test_ema_weights_follow_the_exponential_average() -> None:
    torch.manual_seed(0)
    model = nn.Conv3d(2, 3, 1)
    opt = _opt(model)
    opt.ema = make_ema(model, 0.9)
    run_step(opt, [_batch(4)])
    expected = model.weight.detach().clone()  # torch's AveragedModel starts from the first updated weights
    for seed in (5, 6):
        run_step(opt, [_batch(seed)])
        expected = 0.9 * expected + 0.1 * model.weight.detach()
    torch.testing.assert_close(opt.evaluated.weight, expected)
    assert not torch.equal(opt.evaluated.weight, model.weight)


def test_ema_averages_batch_norm_statistics_and_keeps_its_batch_count() -> None:
    """Before: torch's EMA blended the integer ``num_batches_tracked`` and truncated it, so the saved EMA copy
    counted 1 batch after any number of steps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(2, 3, 1), nn.BatchNorm3d(3))
    opt = _opt(model)
    opt.ema = make_ema(model, 0.9)
    run_step(opt, [_batch(4)])
    expected = model[1].running_mean.clone()
    for seed in (5, 6):
        run_step(opt, [_batch(seed)])
        expected = 0.9 * expected + 0.1 * model[1].running_mean
    torch.testing.assert_close(opt.evaluated[1].running_mean, expected)  # float buffers: the average
    assert int(opt.evaluated[1].num_batches_tracked) == int(model[1].num_batches_tracked) == 3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_steps_run_on_cpu(dtype: torch.dtype) -> None:
    from segkit.engine.step import make_scaler

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 3, 1))
    opt = _opt(model)
    opt.optimizer.param_groups[0]["lr"] = 0.1
    opt.amp_dtype, opt.scaler = dtype, make_scaler(torch.device("cpu"), dtype)
    assert (opt.scaler is not None) == (dtype == torch.float16)  # only fp16 needs loss scaling
    seen: list[torch.dtype] = []
    model[0].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    before = model[0].weight.detach().clone()
    losses = [run_step(opt, [_batch(7)]) for _ in range(3)]
    assert seen == [dtype] * 3  # the convolution ran in reduced precision
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert model[0].weight.dtype == torch.float32 and not torch.equal(model[0].weight, before)  # fp32 master weights


def test_channels_last_inputs_give_the_same_step() -> None:
    torch.manual_seed(0)
    reference = nn.Conv3d(2, 3, 3, padding=1)
    other = nn.Conv3d(2, 3, 3, padding=1).to(memory_format=torch.channels_last_3d)
    other.load_state_dict(reference.state_dict())
    opt = _opt(other)
    opt.channels_last = True
    run_step(_opt(reference), [_batch(8)])
    run_step(opt, [_batch(8)])
    torch.testing.assert_close(other.weight, reference.weight, rtol=1e-5, atol=1e-6)
    assert other.weight.is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize(("setting", "mode"), [(True, None), ("reduce-overhead", "reduce-overhead"),
                                               ("max-autotune", "max-autotune")])
def test_train_compile_picks_torch_compile_mode(setting: bool | str, mode: str | None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from segkit.pipelines import train as train_pipeline

    calls = []
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: calls.append(mode) or model)
    cfg = Config.model_validate({"model": {"spatial_dims": 2, "encoder": "resnet18", "num_classes": 2,
                                           "decoder_channels": [32, 16, 8, 8, 8]},
                                 "train": {"compile": setting, "device": "cpu", "patch_size": [32, 32]}})
    model = nn.Conv2d(1, 2, 3)
    train_pipeline.build_optimisation(cfg, model, torch.device("cpu"))
    assert calls == [mode]


def test_train_compile_rejects_unknown_modes() -> None:
    with pytest.raises(ValueError, match="compile"):
        TrainCfg(compile="fastest")


@pytest.mark.parametrize(("patch", "roi", "faulty_key"), [((64, 64, 32), (64, 64, 64), "train.patch_size"),
                                                          ((64, 64, 64), (96, 96, 32), "infer.roi_size"),
                                                          ((64, 64, 64), (64, 64, 64), None)])
def test_cpu_bf16_training_is_refused_where_onednn_convolutions_are_wrong(
        patch: tuple, roi: tuple, faulty_key: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A last axis of 32 leaves 2 → 1 voxels at the encoder's last stride-2 convolution: the faulty geometry."""
    from segkit.engine import cpu_bf16
    from segkit.models import build_model

    monkeypatch.setattr(cpu_bf16, "cpu_has_native_bf16", lambda: True)  # as on the AMX machine, wherever this runs
    cfg = Config.model_validate({"model": {"encoder": "resnet18", "num_classes": 2, "norm": "batch",
                                           "decoder_channels": [32, 16, 8, 8, 8]},
                                 "train": {"precision": "bf16", "device": "cpu", "patch_size": list(patch)},
                                 "infer": {"roi_size": list(roi)}})
    model = build_model(cfg.model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cpu = torch.device("cpu")
    if faulty_key is None:
        cpu_bf16.refuse_faulty_cpu_bf16(cfg, model, cpu, torch.bfloat16)
    else:
        with pytest.raises(ConfigError, match=f"train.precision=bf16 on this CPU.*{faulty_key}.*precision=fp32"):
            cpu_bf16.refuse_faulty_cpu_bf16(cfg, model, cpu, torch.bfloat16)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    cpu_bf16.refuse_faulty_cpu_bf16(cfg, model, cpu, None)  # fp32: nothing to refuse


def test_a_refused_bf16_run_leaves_no_run_directory(tiny_config, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segkit.pipelines.train import run_training

    from segkit.config import load_config
    from segkit.engine import cpu_bf16

    monkeypatch.setattr(cpu_bf16, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(cpu_bf16, "faulty_bf16_convolutions", lambda model, shape: ["encoder.stem (4×4×2 → stride 2)"])
    cfg = load_config(str(tiny_config), ["train.precision=bf16", "train.device=cpu", "train.batch_size=2"])
    with pytest.raises(ConfigError, match=r"train\.precision=bf16 on this CPU"):
        run_training(cfg)
    assert not (tmp_path / "run").exists()  # refused before the run directory was made: a fixed config just runs


def test_a_warmup_as_long_as_the_run_is_refused_naming_the_keys() -> None:
    TrainCfg(epochs=2, steps_per_epoch=3, warmup_steps=5)
    # before: accepted, and the rate climbed for the whole run, never reaching train.lr nor decaying
    with pytest.raises(ValueError, match=r"train\.warmup_steps \(6\) must be below the run's optimiser steps "
                                         r"\(train\.epochs × train\.steps_per_epoch = 6\)"):
        TrainCfg(epochs=2, steps_per_epoch=3, warmup_steps=6)
