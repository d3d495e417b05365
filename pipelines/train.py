"""Train pipeline: dataset → split → loaders → model → trainer → checkpoints in ``run_dir``."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from rich.console import Console
from segkit.pipelines.data_check import check_dataset, problem_table

from segkit.config import Config, config_to_dict
from segkit.data.cases import DatasetIndex
from segkit.data.index import load_dataset
from segkit.data.loaders import training_loader, validation_dataset
from segkit.data.presets import resolve_from_fingerprint
from segkit.data.splits import choose_split
from segkit.data.transforms import seed_everything
from segkit.engine.checkpoint import save_checkpoint
from segkit.engine.losses import build_loss
from segkit.engine.optim import build_optimizer, build_scheduler
from segkit.engine.trainer import Optimisation, Trainer, TrainState, make_ema
from segkit.engine.validation import evaluate_volumes
from segkit.errors import ConfigError, DataError, SegkitError
from segkit.inference.slicewise import as_volume_model
from segkit.inference.sliding_window import WindowSettings, sliding_window_logits
from segkit.io.atomic import atomic_write_text
from segkit.models import build_model
from segkit.runtime import autocast_dtype, resolve_device


@dataclass(frozen=True)
class TrainResult:
    """Where the run went and how it ended."""

    run_dir: Path
    state: TrainState


def check_trainable(cfg: Config, size_divisor: tuple[int, ...], index: DatasetIndex) -> None:
    """Config checks that need the built model (sizes) or that this pipeline does not support yet."""
    deepest = math.prod(-(-s // d) for s, d in zip(cfg.train.patch_size, size_divisor, strict=True))
    values = deepest * {"batch": cfg.train.batch_size, "instance": 1, "group": 2}[cfg.model.norm]
    if values < 2:
        raise ConfigError(f"train.patch_size: {list(cfg.train.patch_size)} leaves {deepest} voxel(s) at the deepest "
                          f"stage, too few for {cfg.model.norm} norm; use a larger patch"
                          + (" or train.batch_size" if cfg.model.norm == "batch" else " or model.norm: batch"))
    if index.num_classes is not None and index.num_classes != cfg.model.num_classes:
        raise ConfigError(f"model.num_classes is {cfg.model.num_classes} but the dataset at {cfg.data.root} "
                          f"declares {index.num_classes} labels; set model.num_classes: {index.num_classes}")
    if index.channels is not None and index.channels != cfg.model.in_channels:
        raise ConfigError(f"model.in_channels is {cfg.model.in_channels} but the dataset at {cfg.data.root} "
                          f"has {index.channels} channel(s); set model.in_channels: {index.channels}")


def checked_config(cfg: Config, index: DatasetIndex, console: Console) -> Config:
    """Run the (cached) dataset check; stop on errors; resolve fingerprint-derived settings."""
    if cfg.data.image_dims == 2:
        console.print("2D image files: the volume integrity check does not apply and is skipped")
        return cfg
    result, fingerprint = check_dataset(cfg.data.root, cfg.data.format, index)
    if not result.ok:
        console.print(problem_table(result.errors, cfg.data.root))
        raise DataError(f"{cfg.data.root}: {len(result.errors)} problem(s) in the dataset (listed above); fix them "
                        f"or remove the cases, then train again ('segkit data check {cfg.data.root}' re-checks)")
    return cfg.model_copy(update={"data": resolve_from_fingerprint(cfg.data, fingerprint)})


def prepare_run_dir(cfg: Config, overwrite: bool) -> Path:
    """Create ``run_dir``; an existing run is kept unless ``overwrite``."""
    run_dir = Path(cfg.run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise SegkitError(f"run_dir {run_dir} already holds a run; pass --overwrite to replace it "
                              "or choose another with --set run_dir=...")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return run_dir


def run_training(cfg: Config, overwrite: bool = False, console: Console | None = None) -> TrainResult:
    """Train the configured model; writes ``best/`` and ``last/`` checkpoints under ``run_dir``."""
    console = console or Console()
    model = build_model(cfg.model)
    index = load_dataset(cfg.data.root, cfg.data.format)
    check_trainable(cfg, model.size_divisor, index)
    cfg = checked_config(cfg, index, console)
    seed_everything(cfg.seed)
    data = cfg.data
    train_cases, val_cases, splits = choose_split(index.training, data.fold, data.num_folds, data.val_fraction,
                                                  cfg.seed)
    device = resolve_device(cfg.train.device)
    run_dir = prepare_run_dir(cfg, overwrite)
    atomic_write_text(run_dir / "splits.json", json.dumps(splits, indent=1) + "\n")
    console.print(f"training {cfg.model.encoder} UNet on {len(train_cases)} cases, validating on {len(val_cases)} "
                  f"({device}); run dir {run_dir}")
    loader = training_loader(cfg, train_cases)
    val_data = validation_dataset(cfg, val_cases)
    model = model.to(device)
    amp_dtype = autocast_dtype(device, cfg.train.precision)
    optimizer = build_optimizer(model, cfg.train)
    levels = len(cfg.model.decoder_channels) if cfg.model.deep_supervision else 1
    weights = list(cfg.train.class_weights) if cfg.train.class_weights else None
    opt = Optimisation(model, build_loss(cfg.train.loss, levels, weights).to(device), optimizer,
                       build_scheduler(optimizer, cfg.train), device, amp_dtype, cfg.train.grad_clip,
                       cfg.train.accumulate, make_ema(model, cfg.train.ema) if cfg.train.ema else None)
    settings = WindowSettings.from_config(cfg)

    def predict_logits(network: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
        return sliding_window_logits(as_volume_model(network, cfg), image, settings, amp_dtype)

    trainer = Trainer(
        opt,
        validate=lambda m: evaluate_volumes(m, val_data, predict_logits, cfg.model.num_classes, device),
        save=lambda name, weights, state: save_checkpoint(run_dir, name, weights, cfg, state),
        epochs=cfg.train.epochs, val_every=cfg.train.val_every, console=console,
    )
    state = trainer.fit(loader, cfg.train.steps_per_epoch)
    console.print(f"best mean foreground Dice {state.best_metric:.4f} at epoch {state.best_epoch}; "
                  f"checkpoint {run_dir / 'best'}")
    return TrainResult(run_dir, state)
