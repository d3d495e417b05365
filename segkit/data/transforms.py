"""MONAI transform chains built from the config: preprocessing, training sampling, validation.

Preprocessing (load → channel-first → orientation → spacing → intensity) is the
same for training, validation and prediction, so a checkpoint's config fully
defines how ``predict`` prepares a new image.
"""

from __future__ import annotations

import numpy as np
import torch
from monai import transforms as mt

from segkit.config import Config, DataCfg

IMAGE, LABEL = "image", "label"
CLASS_INDICES = "label_cls_indices"
MAX_INDICES_PER_CLASS = 50_000  # bounds cached sampling indices per class (deterministic subsample)


def _intensity(cfg: DataCfg) -> mt.MapTransform:
    if cfg.normalize == "window":
        low, high = cfg.window
        return mt.ScaleIntensityRanged(IMAGE, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)
    return mt.NormalizeIntensityd(IMAGE, nonzero=True, channel_wise=True)


def preprocessing(cfg: DataCfg, with_label: bool) -> list[mt.Transform]:
    """Deterministic preparation of an image (and its label) for the network."""
    keys = [IMAGE, LABEL] if with_label else [IMAGE]
    chain: list[mt.Transform] = [
        mt.LoadImaged(keys, reader="NibabelReader", image_only=True),
        mt.EnsureChannelFirstd(keys),
        mt.Orientationd(keys, axcodes=cfg.orientation, labels=None),
    ]
    if cfg.spacing is not None:
        modes = ["bilinear", "nearest"][: len(keys)]
        chain.append(mt.Spacingd(keys, pixdim=cfg.spacing, mode=modes))
    chain += [_intensity(cfg), mt.EnsureTyped(IMAGE, dtype=torch.float32)]
    if with_label:
        chain.append(mt.EnsureTyped(LABEL, dtype=torch.uint8))
    return chain


def class_ratios(num_classes: int, pos_fraction: float) -> list[float]:
    """Patch-centre probabilities: background gets ``1 - pos_fraction``, classes share the rest."""
    foreground = pos_fraction / (num_classes - 1)
    return [1.0 - pos_fraction] + [foreground] * (num_classes - 1)


def training_transforms(cfg: Config) -> mt.Compose:
    """Preprocessing, cached sampling indices, then random class-balanced patches and flips."""
    keys = [IMAGE, LABEL]
    patch = list(cfg.train.patch_size)
    chain = [
        *preprocessing(cfg.data, with_label=True),
        mt.SpatialPadd(keys, spatial_size=patch),
        mt.ClassesToIndicesd(LABEL, num_classes=cfg.model.num_classes, max_samples_per_class=MAX_INDICES_PER_CLASS),
        mt.RandCropByLabelClassesd(
            keys, label_key=LABEL, spatial_size=patch, num_classes=cfg.model.num_classes, num_samples=1,
            ratios=class_ratios(cfg.model.num_classes, cfg.train.pos_fraction), indices_key=CLASS_INDICES,
            warn=False,
        ),
        mt.DeleteItemsd(CLASS_INDICES),
    ]
    chain += [mt.RandFlipd(keys, prob=cfg.train.flip_prob, spatial_axis=axis) for axis in range(cfg.model.spatial_dims)]
    compose = mt.Compose(chain)
    compose.set_random_state(seed=cfg.seed)
    return compose


def validation_transforms(cfg: DataCfg) -> mt.Compose:
    """Whole preprocessed volumes with labels."""
    return mt.Compose(preprocessing(cfg, with_label=True))


def prediction_transforms(cfg: DataCfg) -> mt.Compose:
    """Whole preprocessed images (no label)."""
    return mt.Compose(preprocessing(cfg, with_label=False))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (MONAI's helper; keeps cuDNN choices free)."""
    from monai.utils import set_determinism

    set_determinism(seed=seed, use_deterministic_algorithms=False)
    np.random.seed(seed)
