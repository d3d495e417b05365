"""Config checks that need the built model (its size divisor), the dataset's manifest or the number of processes,
run before a run directory exists."""

from __future__ import annotations

import math

from segkit.config import Config
from segkit.data.cases import DatasetIndex
from segkit.data.check_2d import image_channels
from segkit.errors import ConfigError

MIN_DEEPEST_EDGE = 4  # nnU-Net's planner stops pooling an axis at 4 voxels (featuremap_min_edge_length)


def deepest_stage(patch_size, size_divisor) -> tuple[int, ...]:
    """Voxels per axis at the encoder's deepest stage for a patch (rounded up, as the model pads)."""
    return tuple(-(-s // d) for s, d in zip(patch_size, size_divisor, strict=True))


def check_trainable(cfg: Config, size_divisor: tuple[int, ...], index: DatasetIndex, world: int = 1) -> None:
    """Refuse a patch whose deepest stage leaves the norm too few values, and a model whose classes or channels
    differ from the dataset's."""
    deepest = math.prod(deepest_stage(cfg.train.patch_size, size_divisor))
    batch = cfg.train.batch_size * (world if cfg.train.sync_batchnorm else 1)  # SyncBatchNorm pools all ranks
    values = deepest * {"batch": batch, "instance": 1, "group": 2}[cfg.model.norm]
    if values < 2:
        raise ConfigError(f"train.patch_size: {list(cfg.train.patch_size)} leaves {deepest} voxel(s) at the deepest "
                          f"stage, too few for {cfg.model.norm} norm; use a larger patch"
                          + (" or train.batch_size" if cfg.model.norm == "batch" else " or model.norm: batch"))
    if index.num_classes is not None and index.num_classes != cfg.model.num_classes:
        raise ConfigError(f"model.num_classes is {cfg.model.num_classes} but the dataset at {cfg.data.root} "
                          f"declares {index.num_classes} labels; set model.num_classes: {index.num_classes}")
    channels = image_channels(index, cfg.data.image_dims)  # 2D colour images: their components (RGB: 3)
    if channels is not None and channels != cfg.model.in_channels:
        raise ConfigError(f"model.in_channels is {cfg.model.in_channels} but the dataset at {cfg.data.root} "
                          f"has {channels} channel(s); set model.in_channels: {channels}")


def small_deepest_stage_warning(cfg: Config, size_divisor: tuple[int, ...]) -> str | None:
    """A warning when instance (or group) norm normalises the deepest stage over fewer than ``MIN_DEEPEST_EDGE``
    voxels along some axis: statistics of so few values wash out much of what the encoder found (the demo recipe
    with 2×2×1 voxels there: validation Dice 0.76 after 400 steps with instance norm, 0.90 with batch norm;
    docs/ARCHITECTURE.md). None when the patch is large enough or the norm is batch norm, whose statistics also
    pool the batch."""
    if cfg.model.norm == "batch":
        return None
    edges = deepest_stage(cfg.train.patch_size, size_divisor)
    if min(edges) >= MIN_DEEPEST_EDGE:
        return None
    larger = [max(s, MIN_DEEPEST_EDGE * d) for s, d in zip(cfg.train.patch_size, size_divisor, strict=True)]
    return (f"train.patch_size: {list(cfg.train.patch_size)} leaves {'×'.join(map(str, edges))} voxels at the "
            f"deepest stage, where {cfg.model.norm} norm over so few values washes out much of what the encoder found "
            f"(nnU-Net keeps at least {MIN_DEEPEST_EDGE} per axis); use a patch of at least {larger} or "
            "model.norm: batch")
