"""The configuration schema (pydantic) and YAML loading with ``base:`` and ``--set``.

A config file is YAML read with ``yaml.safe_load``. It may start with
``base: other.yaml`` (resolved next to the file, then among the packaged
configs) and override any key of it. ``--set a.b=value`` overrides come last;
their values are read as YAML and typed by the schema. Unknown keys and wrong
types are :class:`ConfigError` naming the key, the file and the nearest key.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from segkit.config_loading import Sources, load_raw_config, source_of, to_config
from segkit.errors import ConfigError
from segkit.limits import MAX_AXIS, MAX_VOXELS


def _refuse_bool(value: Any) -> Any:
    # pydantic reads true as 1 for a number; a YAML true there is a mistake (`--set train.epochs=true`)
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


NOT_BOOL = BeforeValidator(_refuse_bool)
Real = Annotated[float, NOT_BOOL]
PositiveFloat = Annotated[float, NOT_BOOL, Field(gt=0.0)]
# a count no run can use beyond 2**31 (e.g. a batch size of 10**20 would crash mid-run, after run_dir exists)
PositiveInt = Annotated[int, NOT_BOOL, Field(gt=0, lt=2**31)]
UnitFloat = Annotated[float, NOT_BOOL, Field(ge=0.0, le=1.0)]


def _device_name(value: str) -> str:
    # checked when the config is read, so `config show` and `compare` refuse it before anything runs
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ValueError(f"must be auto, cpu, cuda or cuda:N, not {value!r}")
    return value


DeviceName = Annotated[str, AfterValidator(_device_name)]


def _each_once(values: tuple) -> tuple:
    if len(set(values)) != len(values):  # mirroring an axis twice is no mirroring: passes would repeat
        raise ValueError(f"lists an axis twice ({list(values)}); give each axis once, e.g. [0, 1, 2]")
    return values


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf / .nan are never settings


class DataCfg(_Section):
    """Where the dataset is and how images are prepared for the network."""

    root: Path = Path("data/demo")
    format: Literal["msd", "nnunet", "folder"] = "msd"
    spacing: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | Literal["auto"] | None = None
    orientation: Literal["RAS", "LPS"] = "RAS"
    normalize: Literal["ct", "mri", "window"] = "window"
    window: tuple[Real, Real] = (-200.0, 300.0)
    # one [lower, upper, mean, std] for every channel, or one such list per channel
    ct_stats: tuple[Real, Real, Real, PositiveFloat] | tuple[tuple[Real, Real, Real, PositiveFloat], ...] | None = None
    image_dims: Annotated[Literal[2, 3], NOT_BOOL] = 3
    slice_axis: Annotated[Literal[0, 1, 2], NOT_BOOL] = 2
    val_fraction: Annotated[float, NOT_BOOL, Field(gt=0.0, lt=1.0)] = 0.2
    fold: Annotated[int, NOT_BOOL, Field(ge=0)] | None = None
    num_folds: Annotated[int, NOT_BOOL, Field(ge=2)] = 5
    split: Literal["seeded", "nnunet"] = "seeded"
    splits_file: Path | None = None
    num_workers: Annotated[int, NOT_BOOL, Field(ge=0)] = 0
    cache: Literal["none", "memory", "disk"] = "memory"
    cache_dir: Path | None = None

    @model_validator(mode="after")
    def _window_is_increasing(self) -> DataCfg:
        if self.window[0] >= self.window[1]:
            raise ValueError("data.window must be [lower, upper] with lower < upper")
        if any(stats[0] >= stats[1] for stats in self.ct_stats_per_channel or ()):
            raise ValueError("data.ct_stats must be [lower, upper, mean, std] with lower < upper")
        if self.fold is not None and self.fold >= self.num_folds and self.splits_file is None:
            raise ValueError(f"data.fold must be below data.num_folds ({self.num_folds})")
        if self.fold is None and (self.splits_file is not None or self.split != "seeded"):
            key = "data.splits_file" if self.splits_file is not None else f"data.split: {self.split}"
            raise ValueError(f"{key} chooses folds: set data.fold (the fold to validate on), or drop it to hold out "
                             "data.val_fraction")
        return self


    @property
    def ct_stats_per_channel(self) -> tuple[tuple[float, float, float, float], ...] | None:
        """``ct_stats`` as one entry per channel (a single list is one entry, shared by every channel)."""
        if self.ct_stats is None:
            return None
        return self.ct_stats if isinstance(self.ct_stats[0], tuple) else (self.ct_stats,)


class ModelCfg(_Section):
    """A UNet: encoder, decoder (upsampling + skip fusion) and segmentation head."""

    spatial_dims: Annotated[Literal[2, 3], NOT_BOOL] = 3
    encoder: str = "resnet34"
    upsample: str = "transposed"
    fusion: str = "concat"
    in_channels: PositiveInt = 1
    num_classes: Annotated[int, NOT_BOOL, Field(ge=2, le=256)] = 4  # labels are read as 8-bit for training
    decoder_channels: tuple[PositiveInt, ...] = (256, 128, 64, 32, 16)
    norm: Literal["batch", "instance", "group"] = "instance"
    act: Literal["relu", "leakyrelu", "gelu", "silu"] = "relu"
    strides: tuple[PositiveInt | tuple[PositiveInt, ...], ...] | None = None
    deep_supervision: bool = False
    encoder_weights: Path | None = None


class AugmentCfg(_Section):
    """Training augmentation: each entry's probability per patch, plus the ranges it draws from."""

    flip: UnitFloat = 0.5
    rot90: UnitFloat = 0.0
    affine: UnitFloat = 0.2
    rotate_deg: Annotated[float, NOT_BOOL, Field(ge=0.0, le=180.0)] = 15.0
    scale: Annotated[float, NOT_BOOL, Field(ge=0.0, lt=1.0)] = 0.15
    elastic: UnitFloat = 0.0
    gamma: UnitFloat = 0.3
    noise: UnitFloat = 0.1
    contrast: UnitFloat = 0.15
    bias_field: UnitFloat = 0.0


class AlbumentationsStep(_Section):
    """One albumentations transform: its class name, probability and keyword parameters."""

    name: str
    p: UnitFloat = 0.5
    params: dict[str, Any] = {}


class TrainCfg(_Section):
    """Patch-based training schedule, sampling and optimisation."""

    epochs: PositiveInt = 100
    steps_per_epoch: PositiveInt = 250
    batch_size: PositiveInt = 2
    patch_size: tuple[PositiveInt, ...] = (128, 128, 128)
    lr: PositiveFloat = 1e-3
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: Annotated[float, NOT_BOOL, Field(ge=0.0, lt=1.0)] = 0.99
    weight_decay: Annotated[float, NOT_BOOL, Field(ge=0.0)] = 1e-5
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    warmup_steps: Annotated[int, NOT_BOOL, Field(ge=0)] = 0
    grad_clip: PositiveFloat | None = None
    accumulate: PositiveInt = 1
    ema: Annotated[float, NOT_BOOL, Field(gt=0.0, lt=1.0)] | None = None
    loss: str = "dice_ce"
    class_weights: tuple[PositiveFloat, ...] | None = None
    val_every: PositiveInt = 1
    stop_at_dice: Annotated[float, NOT_BOOL, Field(gt=0.0, le=1.0)] | None = None
    pos_fraction: UnitFloat = 0.67
    sampling: Literal["class_balanced", "posneg"] = "class_balanced"
    augment: AugmentCfg = AugmentCfg()
    albumentations: tuple[AlbumentationsStep, ...] = ()
    device: DeviceName = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    compile: bool | Literal["reduce-overhead", "max-autotune"] = False  # true: torch.compile's default mode
    checkpoint_every: Annotated[int, NOT_BOOL, Field(ge=0)] = 0
    surface_metrics: bool = True
    surface_tolerance: PositiveFloat = 1.0
    sync_batchnorm: bool = False

    @model_validator(mode="after")
    def _warmup_ends_before_the_run(self) -> TrainCfg:
        total = self.epochs * self.steps_per_epoch
        if self.warmup_steps >= total:  # the rate would never reach train.lr nor follow train.schedule
            raise ValueError(f"train.warmup_steps ({self.warmup_steps}) must be below the run's optimiser steps "
                             f"(train.epochs × train.steps_per_epoch = {total}), or the learning rate never reaches "
                             "train.lr; lower train.warmup_steps or raise train.epochs")
        return self


class InferCfg(_Section):
    """Sliding-window inference; ``roi_size: null`` means ``train.patch_size``."""

    roi_size: tuple[PositiveInt, ...] | None = None
    overlap: Annotated[float, NOT_BOOL, Field(ge=0.0, lt=1.0)] = 0.5
    sw_batch_size: PositiveInt | Literal["auto"] = 2
    blend: Literal["gaussian", "constant"] = "gaussian"
    tta_axes: Annotated[tuple[Annotated[Literal[0, 1, 2], NOT_BOOL], ...], AfterValidator(_each_once)] = (0, 1, 2)
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    cuda_graphs: bool = True  # on a GPU, replay each window-batch shape's forward pass as a CUDA graph
    compression_level: Annotated[int, NOT_BOOL, Field(ge=0, le=9)] = 1
    keep_largest: tuple[PositiveInt, ...] = ()  # labels reduced to their largest connected component


class Config(_Section):
    """A whole segkit run: data, model, training and inference."""

    run_dir: Path = Path("runs/unet_resnet34")
    seed: Annotated[int, NOT_BOOL, Field(ge=0, lt=2**32)] = 0  # numpy's and torch's seed range
    data: DataCfg = DataCfg()
    model: ModelCfg = ModelCfg()
    train: TrainCfg = TrainCfg()
    infer: InferCfg = InferCfg()

    @model_validator(mode="after")
    def _keys_agree(self) -> Config:
        self._check_windows()
        dims = self.model.spatial_dims
        weights = self.train.class_weights
        if weights is not None and (self.train.loss != "ce" or len(weights) != self.model.num_classes):
            raise ValueError(f"train.class_weights needs train.loss: ce and one weight per class "
                             f"({self.model.num_classes}, background included)")
        if self.data.image_dims == 2 and dims != 2:
            raise ValueError("data.image_dims 2 (2D image files) needs model.spatial_dims: 2")
        if self.train.augment.elastic > 0 and dims != 3:  # MONAI's 3D elastic transform; nothing would apply it
            raise ValueError("train.augment.elastic is for 3D models; for 2D models use train.albumentations, e.g. "
                             "[{name: ElasticTransform, p: 0.2}], or set train.augment.elastic: 0")
        if self.train.albumentations and dims != 2:
            raise ValueError("train.albumentations is for 2D models (model.spatial_dims: 2); 3D patches are "
                             "augmented by train.augment")
        patch = self.train.patch_size
        if self.train.augment.rot90 > 0 and len(patch) >= 2 and patch[0] != patch[1]:
            raise ValueError(f"train.augment.rot90 turns the patch's first two axes, which differ in train.patch_size "
                             f"({patch[0]} and {patch[1]}), so patches of two shapes would meet in one batch; make "
                             "them equal or set train.augment.rot90: 0")
        stats = self.data.ct_stats
        if stats is not None and isinstance(stats[0], tuple) and len(stats) != self.model.in_channels:
            raise ValueError(f"data.ct_stats lists {len(stats)} channels but model.in_channels is "
                             f"{self.model.in_channels}; give one [lower, upper, mean, std] per channel or one for all")
        outside = [label for label in self.infer.keep_largest if label >= self.model.num_classes]
        if outside:
            raise ValueError(f"infer.keep_largest names label {outside[0]}, but model.num_classes is "
                             f"{self.model.num_classes} (labels 1..{self.model.num_classes - 1})")
        for index, stride in enumerate(self.model.strides or ()):
            if isinstance(stride, tuple) and len(stride) != dims:
                raise ValueError(f"model.strides[{index}] has {len(stride)} values but model.spatial_dims is {dims}")
        return self

    def _check_windows(self) -> None:
        """Patch and sliding-window sizes: one value per spatial dimension, and of a size that can be allocated."""
        dims = self.model.spatial_dims
        for key, size in (("train.patch_size", self.train.patch_size), ("infer.roi_size", self.infer.roi_size)):
            if size is None:
                continue
            if len(size) != dims:
                raise ValueError(f"{key} has {len(size)} values but model.spatial_dims is {dims}")
            if math.prod(size) > MAX_VOXELS or max(size) > MAX_AXIS:
                raise ValueError(f"{key} {list(size)} is over the limit of 2**31 voxels or {MAX_AXIS} per axis, far "
                                 f"more than fits in memory; use a window of the images' scale, e.g. {[128] * dims}")

    @property
    def roi_size(self) -> tuple[int, ...]:
        """The sliding-window size actually used (per model dims)."""
        return self.infer.roi_size or self.train.patch_size

    @property
    def slices_volumes(self) -> bool:
        """Whether a 2D model works on slices of 3D volumes (rather than on 2D image files)."""
        return self.model.spatial_dims == 2 and self.data.image_dims == 3

    def on_volume(self, size: tuple[int, ...]) -> tuple[int, ...]:
        """For a 2D model on volumes, a 2D size as a one-slice window across ``data.slice_axis``."""
        if not self.slices_volumes:
            return tuple(size)
        size = list(size)
        size.insert(self.data.slice_axis, 1)
        return tuple(size)


def _check_names(cfg: Config, sources: Sources) -> None:
    from segkit.registry import ENCODERS, FUSIONS, LOSSES, UPSAMPLERS

    for key, value, registry in (
        ("model.encoder", cfg.model.encoder, ENCODERS),
        ("model.upsample", cfg.model.upsample, UPSAMPLERS),
        ("model.fusion", cfg.model.fusion, FUSIONS),
        ("train.loss", cfg.train.loss, LOSSES),
    ):
        if value not in registry:
            raise ConfigError(f"{source_of(sources, key)}: {key}: {registry.unknown_message(value)}")


def load_config(path_or_name: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load, merge and validate a config file (a path or a packaged config name)."""
    raw, sources = load_raw_config(path_or_name, overrides)
    cfg = to_config(Config, raw, sources)
    _check_names(cfg, sources)
    return cfg


def config_from_dict(raw: dict[str, Any], source: str) -> Config:
    """Validate an already-resolved config (e.g. a checkpoint's config.json)."""
    cfg = to_config(Config, raw, {"": source})
    _check_names(cfg, {"": source})
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain JSON/YAML-ready data."""
    return cfg.model_dump(mode="json")
