"""Datasets and loaders: decoded, preprocessed volumes cached in memory, patches sampled per step."""

from __future__ import annotations

import torch
from monai.data import CacheDataset, DataLoader, list_data_collate
from torch.utils.data import RandomSampler

from segkit.config import Config
from segkit.data.cases import Case
from segkit.data.transforms import training_transforms, validation_transforms


def _records(cases: list[Case]) -> list[dict]:
    """MONAI records; several channel files in one list are stacked as channels by LoadImaged."""
    return [{"image": [str(p) for p in c.images] if c.extra_channels else str(c.image), "label": str(c.label),
             "case_id": c.case_id} for c in cases]


def training_loader(cfg: Config, cases: list[Case]) -> DataLoader:
    """An endless-feeling loader: each epoch draws ``steps_per_epoch`` batches of random patches."""
    dataset = CacheDataset(_records(cases), training_transforms(cfg), cache_rate=1.0,
                           num_workers=max(1, cfg.data.num_workers), progress=False)
    generator = torch.Generator().manual_seed(cfg.seed)
    sampler = RandomSampler(dataset, replacement=True,
                            num_samples=cfg.train.steps_per_epoch * cfg.train.batch_size, generator=generator)
    return DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler, num_workers=cfg.data.num_workers,
                      collate_fn=list_data_collate, pin_memory=torch.cuda.is_available(),
                      persistent_workers=cfg.data.num_workers > 0)


def validation_dataset(cfg: Config, cases: list[Case]) -> CacheDataset:
    """Whole preprocessed validation volumes, decoded once."""
    return CacheDataset(_records(cases), validation_transforms(cfg.data), cache_rate=1.0,
                        num_workers=max(1, cfg.data.num_workers), progress=False)
