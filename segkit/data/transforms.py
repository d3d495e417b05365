"""MONAI transform chains built from the config: preprocessing, training sampling, validation.

Preprocessing (load → channel-first → orientation → spacing → intensity) is the
same for training, validation and prediction, so a checkpoint's config fully
defines how ``predict`` prepares a new image.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from monai import transforms as mt

from segkit.config import AugmentCfg, Config, DataCfg
from segkit.data.cache import DiskCached
from segkit.data.context import ContextCropd, ContextSpatiald, context_margin
from segkit.data.host_loading import ToDeviceAsFloatd, load_channel_first
from segkit.data.intensity import PerChannelClipZScored
from segkit.data.sampling import ForegroundShareCropd
from segkit.errors import ConfigError
from segkit.io.nifti_reader import NiftiReader
from segkit.io.sitk_reader import SimpleITKReader

IMAGE, LABEL = "image", "label"
CLASS_INDICES = "label_cls_indices"
ANISOTROPY = 3.0  # largest over smallest target spacing beyond which 3D patches rotate in-plane only (nnU-Net)
MAX_INDICES_PER_CLASS = 50_000  # bounds cached sampling indices per class (deterministic subsample)


def _intensity(cfg: DataCfg) -> mt.MapTransform:
    """``window``: clip to the window, scale to [0, 1]; ``ct`` (nnU-Net): clip to the dataset's foreground
    0.5–99.5 percentiles, then z-score with its foreground mean and std (one linear map with clipping);
    ``mri``: z-score each channel over its non-zero voxels. ``ct`` with statistics per channel clips and z-scores
    each channel with its own."""
    if cfg.normalize == "window":
        low, high = cfg.window
        return mt.ScaleIntensityRanged(IMAGE, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)
    if cfg.normalize == "ct":
        if cfg.ct_stats is None:
            raise ConfigError("data.ct_stats: needed for data.normalize: ct; training fills it from the dataset "
                              "fingerprint, or give [lower, upper, mean, std]")
        if len(cfg.ct_stats_per_channel) > 1:
            return PerChannelClipZScored(IMAGE, cfg.ct_stats_per_channel)
        low, high, mean, std = cfg.ct_stats_per_channel[0]
        return mt.ScaleIntensityRanged(IMAGE, a_min=low, a_max=high, b_min=(low - mean) / std,
                                       b_max=(high - mean) / std, clip=True)
    return mt.NormalizeIntensityd(IMAGE, nonzero=True, channel_wise=True)


def preprocessing(cfg: DataCfg, with_label: bool) -> list[mt.Transform]:
    """Deterministic preparation of an image (and its label) for the network."""
    keys = [IMAGE, LABEL] if with_label else [IMAGE]
    chain: list[mt.Transform] = [
        mt.LoadImaged(keys, reader=readers(), image_only=True),
        mt.EnsureChannelFirstd(keys),
    ]
    if cfg.image_dims == 2:  # 2D image files: no patient frame to reorient or resample in
        from segkit.data.planar import DropUnitDepthd  # (X, Y, 1) files: 2D for the network

        return [*chain, DropUnitDepthd(keys), _intensity(cfg), mt.EnsureTyped(IMAGE, dtype=torch.float32),
                *([mt.EnsureTyped(LABEL, dtype=torch.uint8)] if with_label else [])]
    chain.append(mt.Orientationd(keys, axcodes=cfg.orientation, labels=None))
    if cfg.spacing == "auto":
        raise ConfigError("data.spacing: 'auto' is resolved from the dataset fingerprint when training starts; "
                          "give explicit spacing here")
    if cfg.spacing is not None:
        modes = ["bilinear", "nearest"][: len(keys)]
        chain.append(mt.Spacingd(keys, pixdim=cfg.spacing, mode=modes))
    chain += [_intensity(cfg), mt.EnsureTyped(IMAGE, dtype=torch.float32)]
    if with_label:
        chain.append(mt.EnsureTyped(LABEL, dtype=torch.uint8))
    return chain


def training_transforms(cfg: Config) -> mt.Compose:
    """Preprocessing, cached sampling indices, then random class-balanced patches and flips."""
    return _seeded(preprocessing(cfg.data, with_label=True) + sampling(cfg), cfg.seed)


def sampling(cfg: Config) -> list[mt.Transform]:
    """After preprocessing: the deterministic preparation, then the random patch and its augmentation."""
    return sampling_preparation(cfg) + patch_drawing(cfg)


def sampling_preparation(cfg: Config) -> list[mt.Transform]:
    """Deterministic, cacheable: pad to the patch size and index the voxels of each class."""
    keys = [IMAGE, LABEL]
    patch = list(cfg.on_volume(cfg.train.patch_size))  # 2D models: a one-slice patch of the volume
    if cfg.train.sampling == "posneg":
        indices = mt.FgBgToIndicesd(LABEL, fg_postfix="_fg", bg_postfix="_bg")
    else:
        indices = mt.ClassesToIndicesd(LABEL, num_classes=cfg.model.num_classes,
                                       max_samples_per_class=MAX_INDICES_PER_CLASS)
    return [mt.SpatialPadd(keys, spatial_size=patch), indices]


def patch_margin(cfg: Config) -> list[int] | None:
    """Voxels of context on each side of a training patch for its affine/elastic augmentation, per patch axis;
    None when neither is on."""
    aug, dims = cfg.train.augment, cfg.model.spatial_dims
    elastic = aug.elastic > 0 and dims == 3
    if aug.affine == 0 and not elastic:
        return None
    return list(context_margin(cfg.train.patch_size, aug.affine > 0, aug.rotate_deg, aug.scale, rotation_axes(cfg),
                               elastic))


def _on_volume_axes(cfg: Config, margin: list[int]) -> tuple[int, ...]:
    """A per-patch-axis ``margin`` per volume axis (0 across a 2D model's slices)."""
    margin = list(margin)
    if cfg.slices_volumes:
        margin.insert(cfg.data.slice_axis, 0)
    return tuple(margin)


def patch_drawing(cfg: Config) -> list[mt.Transform]:
    """Random: a class-balanced (or pos/neg) crop with context, its augmentation, then the patch at its centre."""
    keys = [IMAGE, LABEL]
    patch = list(cfg.on_volume(cfg.train.patch_size))
    within = patch_margin(cfg)
    chain = _patch_crop(cfg, patch, _on_volume_axes(cfg, within) if within is not None else None)
    if cfg.slices_volumes:
        chain.append(mt.SqueezeDimd(keys, dim=cfg.data.slice_axis + 1, update_meta=False))
    context = (list(cfg.train.patch_size), within) if within is not None else None
    chain += augmentations(cfg.train.augment, cfg.model.spatial_dims, rotation_axes(cfg), context)
    if cfg.train.albumentations:  # imported here: albumentations takes a second to import and most runs don't use it
        from segkit.data.albu import Albumentationsd, build_pipeline

        chain.append(Albumentationsd(IMAGE, LABEL, build_pipeline(list(cfg.train.albumentations))))
    return chain


def _seeded(chain: list, seed: int) -> mt.Compose:
    compose = mt.Compose(chain)
    compose.set_random_state(seed=seed)
    return compose


def disk_cached_preprocessing(cfg: DataCfg, cache_dir: Path) -> DiskCached:
    """Image-and-label preprocessing served from the disk cache (computed and stored on first use)."""
    return DiskCached(mt.Compose(preprocessing(cfg, with_label=True)), [IMAGE, LABEL], cache_dir,
                      preprocessing_settings(cfg))


def disk_cached_training_transforms(cfg: Config, cache_dir: Path) -> mt.Compose:
    """Like :func:`training_transforms`, with preprocessing served from the disk cache."""
    return _seeded([disk_cached_preprocessing(cfg.data, cache_dir), *sampling(cfg)], cfg.seed)


def preprocessing_settings(cfg: DataCfg) -> str:
    """The data settings that change preprocessed arrays (the disk cache key includes them)."""
    fields = {"spacing", "orientation", "normalize", "window", "ct_stats", "image_dims"}  # 2: no resampling, (X, Y)
    return json.dumps(cfg.model_dump(mode="json", include=fields), sort_keys=True)


def _patch_crop(cfg: Config, patch: list[int], margin: tuple[int, ...] | None) -> list[mt.Transform]:
    """Patch centres: per class (rare classes oversampled; the classes a case holds share ``pos_fraction``) or
    foreground/background (``train.sampling``); with ``margin`` (affine/elastic augmentation on) cut with context."""
    keys, pos = [IMAGE, LABEL], cfg.train.pos_fraction
    if cfg.train.sampling == "posneg":
        index_keys = [f"{LABEL}_fg", f"{LABEL}_bg"]
        crop = mt.RandCropByPosNegLabeld(keys, label_key=LABEL, spatial_size=patch, pos=pos, neg=1.0 - pos,
                                         num_samples=1, fg_indices_key=index_keys[0], bg_indices_key=index_keys[1])
    else:
        index_keys = [CLASS_INDICES]
        crop = ForegroundShareCropd(keys, LABEL, patch, cfg.model.num_classes, pos, CLASS_INDICES)
    aug = cfg.train.augment
    if margin is not None:  # a larger cut for patches that get affine/elastic augmentation (data.context)
        elastic = aug.elastic if cfg.model.spatial_dims == 3 else 0.0
        crop = ContextCropd(keys, crop, LABEL, index_keys, margin, aug.affine, elastic)
    return [crop, mt.DeleteItemsd(index_keys)]


def rotation_axes(cfg: Config) -> tuple[int, ...]:
    """The axes a 3D patch is rotated about: all three, or — when ``data.spacing`` is anisotropic (largest over
    smallest > 3, nnU-Net's threshold) — only the coarse axis, i.e. in-plane: about another axis a rotation of
    thick-slice voxels is a shear in millimetres."""
    spacing = cfg.data.spacing
    if cfg.model.spatial_dims != 3 or not isinstance(spacing, tuple) or max(spacing) <= ANISOTROPY * min(spacing):
        return (0, 1, 2)
    return (int(np.argmax(spacing)),)


def augmentations(aug: AugmentCfg, spatial_dims: int, rotation: tuple[int, ...] = (0, 1, 2),
                  context: tuple[list[int], list[int]] | None = None) -> list[mt.Transform]:
    """Random spatial (image + label) then intensity (image only) augmentations; zero probability = absent.
    ``rotation``: the axes a 3D patch is rotated about. ``context``: (patch, margin) when the input is a crop
    with ``margin`` voxels around the patch: the affine and elastic transforms use it, then the patch is cut
    from its centre (``segkit.data.context``), then flips and quarter turns."""
    keys = [IMAGE, LABEL]
    chain = [_context_spatial(aug, spatial_dims, rotation, *context)] if context is not None else []
    chain += [
        *(mt.RandFlipd(keys, prob=aug.flip, spatial_axis=axis) for axis in range(spatial_dims)),
        mt.RandRotate90d(keys, prob=aug.rot90, spatial_axes=(0, 1)),
        mt.RandAdjustContrastd(IMAGE, prob=aug.gamma, gamma=(0.7, 1.5)),
        mt.RandGaussianNoised(IMAGE, prob=aug.noise, std=0.05),
        mt.RandScaleIntensityFixedMeand(IMAGE, prob=aug.contrast, factors=0.25, preserve_range=True),
        mt.RandBiasFieldd(IMAGE, prob=aug.bias_field, coeff_range=(0.0, 0.1)),
    ]
    return [t for t in chain if getattr(t, "prob", 1.0) > 0]


def _context_spatial(aug: AugmentCfg, spatial_dims: int, rotation: tuple[int, ...], patch: list[int],
                     margin: list[int]) -> ContextSpatiald:
    """Affine (rotation, scaling) and, in 3D, elastic deformation of a crop with context, then its centre."""
    keys, modes = [IMAGE, LABEL], ["bilinear", "nearest"]
    elastic = spatial_dims == 3 and aug.elastic > 0
    context = [p + 2 * m for p, m in zip(patch, margin, strict=True)]
    angle = math.radians(aug.rotate_deg)
    angles = [angle] if spatial_dims == 2 else [angle if axis in rotation else 0.0 for axis in range(3)]
    affine = mt.RandAffined(keys, spatial_size=context if elastic else patch, prob=1.0, rotate_range=angles,
                            scale_range=[aug.scale] * spatial_dims, mode=modes, padding_mode="border")
    deform = mt.Rand3DElasticd(keys, sigma_range=(5, 8), magnitude_range=(50, 150), spatial_size=patch, prob=1.0,
                               mode=modes, padding_mode="border") if elastic else None
    return ContextSpatiald(keys, patch, affine if aug.affine > 0 else None, deform)


def validation_transforms(cfg: DataCfg, cache_dir: Path | None = None) -> mt.Compose:
    """Whole preprocessed volumes with labels (from the disk cache when ``cache_dir`` is given)."""
    if cache_dir is None:
        return mt.Compose(preprocessing(cfg, with_label=True))
    return mt.Compose([disk_cached_preprocessing(cfg, cache_dir)])


def prediction_transforms(cfg: DataCfg) -> mt.Compose:
    """Whole preprocessed images (no label)."""
    return mt.Compose(preprocessing(cfg, with_label=False))


def readers() -> list:
    """The image readers, in the order they are tried: NIfTI (nibabel headers, fast gzip), then SimpleITK."""
    return [NiftiReader(), SimpleITKReader()]


def split_prediction_transforms(cfg: DataCfg, device: torch.device) -> tuple[Callable, mt.MapTransform, mt.Compose]:
    """The prediction chain in three parts: reading (host threads; the array keeps the file's layout and dtype,
    see ``host_loading``); the copy to ``device`` as contiguous float32; and there reorientation, resampling to
    the target spacing and normalisation (MONAI's transforms run on GPU tensors)."""
    chain = preprocessing(cfg, with_label=False)
    cut = next(i for i, t in enumerate(chain) if not isinstance(t, mt.LoadImaged | mt.EnsureChannelFirstd))
    return partial(load_channel_first, readers=readers()), ToDeviceAsFloatd(IMAGE, device), mt.Compose(chain[cut:])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch and MONAI's global seed (MONAI's ``set_determinism``), leaving cuDNN's
    algorithm choice free: ``set_determinism`` also forces ``cudnn.deterministic`` on and ``cudnn.benchmark``
    off, which slows GPU training (benchmark mode is turned on where shapes are fixed). It is called without
    ``use_deterministic_algorithms``, whose torch call costs seconds of start-up (it imports torch._dynamo)."""
    from monai.utils import set_determinism

    cudnn = torch.backends.cudnn
    deterministic, benchmark = cudnn.deterministic, cudnn.benchmark
    set_determinism(seed=seed)
    cudnn.deterministic, cudnn.benchmark = deterministic, benchmark
    np.random.seed(seed)
