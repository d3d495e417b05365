"""Datasets and loaders: preprocessed volumes cached (memory or disk), random patches sampled per step."""

from __future__ import annotations

import torch
from monai.data import CacheDataset, DataLoader, Dataset, list_data_collate
from monai.transforms import Transform
from torch.utils.data import RandomSampler

from segkit.config import Config
from segkit.data.cache import default_cache_dir
from segkit.data.cases import Case
from segkit.data.transforms import disk_cached_training_transforms, training_transforms, validation_transforms


def _records(cases: list[Case]) -> list[dict]:
    """MONAI records; several channel files in one list are stacked as channels by LoadImaged."""
    return [{"image": [str(p) for p in c.images] if c.extra_channels else str(c.image), "label": str(c.label),
             "case_id": c.case_id} for c in cases]


def _dataset(cfg: Config, records: list[dict], in_memory: Transform, from_disk: Transform) -> Dataset:
    """``data.cache``: memory (decode once, keep), disk (decode once, read raw arrays), none (decode always)."""
    if cfg.data.cache == "memory":
        return CacheDataset(records, in_memory, cache_rate=1.0, num_workers=max(1, cfg.data.num_workers),
                            progress=False)
    return Dataset(records, from_disk if cfg.data.cache == "disk" else in_memory)


def training_loader(cfg: Config, cases: list[Case]) -> DataLoader:
    """An endless-feeling loader: each epoch draws ``steps_per_epoch`` batches of random patches."""
    cache_dir = cfg.data.cache_dir or default_cache_dir()
    dataset = _dataset(cfg, _records(cases), training_transforms(cfg),
                       disk_cached_training_transforms(cfg, cache_dir) if cfg.data.cache == "disk" else None)
    generator = torch.Generator().manual_seed(cfg.seed)
    sampler = RandomSampler(dataset, replacement=True,
                            num_samples=cfg.train.steps_per_epoch * cfg.train.batch_size * cfg.train.accumulate,
                            generator=generator)
    return DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler, num_workers=cfg.data.num_workers,
                      collate_fn=list_data_collate, pin_memory=torch.cuda.is_available(),
                      persistent_workers=cfg.data.num_workers > 0)


def validation_dataset(cfg: Config, cases: list[Case]) -> Dataset:
    """Whole preprocessed validation volumes, decoded once (memory or disk cache)."""
    cache_dir = cfg.data.cache_dir or default_cache_dir()
    return _dataset(cfg, _records(cases), validation_transforms(cfg.data),
                    validation_transforms(cfg.data, cache_dir) if cfg.data.cache == "disk" else None)
