"""The training sample stream: sample n depends only on (seed, n); steps map to disjoint samples per rank."""

from __future__ import annotations

from pathlib import Path

import torch

from segkit.config import Config, DataCfg, ModelCfg, TrainCfg
from segkit.data.index import load_dataset
from segkit.data.loaders import training_loader
from segkit.data.stream import StepLayout, StepSampler


def _cfg(root: Path, workers: int = 0, accumulate: int = 1) -> Config:
    return Config(
        data=DataCfg(root=root, spacing=(1.2, 1.2, 2.5), num_workers=workers),
        model=ModelCfg(encoder="resnet18"),
        train=TrainCfg(epochs=2, steps_per_epoch=3, batch_size=2, accumulate=accumulate, patch_size=(24, 24, 16)),
        seed=11,
    )


def _batches(loader) -> list[dict[str, torch.Tensor]]:
    return [{"image": b["image"].clone(), "label": b["label"].clone()} for b in loader]


def test_every_sample_number_maps_to_one_patch_whatever_the_workers(tiny_dataset: Path) -> None:
    cases = load_dataset(tiny_dataset, "msd").training
    serial = _batches(training_loader(_cfg(tiny_dataset), cases))
    parallel = _batches(training_loader(_cfg(tiny_dataset, workers=2), cases))
    assert len(serial) == 6
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(serial[0]["image"], serial[1]["image"])  # different samples, not one repeated patch


def test_a_loader_started_at_step_k_continues_the_same_stream(tiny_dataset: Path) -> None:
    cases = load_dataset(tiny_dataset, "msd").training
    cfg = _cfg(tiny_dataset, accumulate=2)
    whole = _batches(training_loader(cfg, cases))
    tail = _batches(training_loader(cfg, cases, start_step=4))
    assert len(whole) == 12 and len(tail) == 4  # 2 micro-batches per step
    for a, b in zip(whole[8:], tail, strict=True):
        assert torch.equal(a["image"], b["image"])


def test_ranks_draw_disjoint_samples_of_one_global_stream() -> None:
    layout = StepLayout(batch=2, accumulate=3, world=4)
    per_rank = [list(StepSampler(layout, 5, 7, rank)) for rank in range(4)]
    everything = sorted(n for samples in per_rank for n in samples)
    first = 5 * layout.samples_per_step()
    assert everything == list(range(first, first + 2 * layout.samples_per_step()))
    assert all(len(samples) == len(StepSampler(layout, 5, 7, 0)) == 12 for samples in per_rank)
    single = StepLayout(batch=2, accumulate=3, world=1)
    assert list(StepSampler(single, 0, 2)) == list(range(12))


def test_more_workers_than_cores_are_capped_at_the_cores(tiny_dataset: Path, monkeypatch) -> None:
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    cases = load_dataset(tiny_dataset, "msd").training
    assert training_loader(_cfg(tiny_dataset, workers=4), cases).num_workers == 2  # before: 4 (torch warned)
    assert training_loader(_cfg(tiny_dataset, workers=1), cases).num_workers == 1
