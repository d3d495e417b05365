"""Datasets and loaders: preprocessed volumes cached (memory or disk), random patches sampled per step."""

from __future__ import annotations

import os

import torch
from monai.data import CacheDataset, DataLoader, Dataset, list_data_collate
from monai.transforms import Compose, Transform

from segkit.config import Config
from segkit.data.cache import default_cache_dir
from segkit.data.cases import Case
from segkit.data.stream import SeededPatches, StepLayout, StepSampler
from segkit.data.transforms import (
    disk_cached_preprocessing,
    patch_drawing,
    preprocessing,
    sampling_preparation,
    validation_transforms,
)


def loader_workers(cfg: Config) -> int:
    """``data.num_workers``, capped at the CPUs this process may use: more worker processes than cores only
    contend (torch warns), and the patches do not depend on the count (each is seeded by its index)."""
    return min(cfg.data.num_workers, len(os.sched_getaffinity(0)))


def _records(cases: list[Case]) -> list[dict]:
    """MONAI records; several channel files in one list are stacked as channels by LoadImaged."""
    return [{"image": [str(p) for p in c.images] if c.extra_channels else str(c.image), "label": str(c.label),
             "case_id": c.case_id} for c in cases]


def _dataset(cfg: Config, records: list[dict], in_memory: Transform, from_disk: Transform) -> Dataset:
    """``data.cache``: memory (decode once, keep), disk (decode once, read raw arrays), none (decode always)."""
    if cfg.data.cache == "memory":
        return CacheDataset(records, in_memory, cache_rate=1.0, num_workers=max(1, loader_workers(cfg)),
                            progress=False)
    return Dataset(records, from_disk if cfg.data.cache == "disk" else in_memory)


def training_cases(cfg: Config, cases: list[Case]) -> Dataset:
    """Preprocessed training cases, padded and with their class indices (cached per ``data.cache``)."""
    prepared = preprocessing(cfg.data, with_label=True) + sampling_preparation(cfg)
    from_disk = None
    if cfg.data.cache == "disk":
        cache_dir = cfg.data.cache_dir or default_cache_dir()
        from_disk = Compose([disk_cached_preprocessing(cfg.data, cache_dir), *sampling_preparation(cfg)])
    return _dataset(cfg, _records(cases), Compose(prepared), from_disk)


def training_loader(cfg: Config, cases: list[Case], start_step: int = 0, rank: int = 0,
                    world: int = 1) -> DataLoader:
    """Batches of random patches for optimiser steps ``start_step`` … the end of training, for one rank.

    Each yielded batch is one micro-batch; a step takes ``train.accumulate`` of them.
    """
    train = cfg.train
    layout = StepLayout(train.batch_size, train.accumulate, world)
    total_steps = train.epochs * train.steps_per_epoch
    patches = SeededPatches(training_cases(cfg, cases), Compose(patch_drawing(cfg)), cfg.seed,
                            total_steps * layout.samples_per_step())
    return DataLoader(patches, batch_size=train.batch_size, sampler=StepSampler(layout, start_step, total_steps, rank),
                      num_workers=loader_workers(cfg), collate_fn=list_data_collate,
                      pin_memory=torch.cuda.is_available(), persistent_workers=loader_workers(cfg) > 0)


def validation_dataset(cfg: Config, cases: list[Case]) -> Dataset:
    """Whole preprocessed validation volumes, decoded once (memory or disk cache)."""
    cache_dir = cfg.data.cache_dir or default_cache_dir()
    return _dataset(cfg, _records(cases), validation_transforms(cfg.data),
                    validation_transforms(cfg.data, cache_dir) if cfg.data.cache == "disk" else None)
