"""Train pipeline: dataset → split → loaders → model → trainer → checkpoints in ``run_dir``."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from monai.data import Dataset
from rich.console import Console
from rich.markup import escape
from segkit.pipelines.data_check import check_dataset, problem_table
from segkit.pipelines.train_checks import check_trainable, small_deepest_stage_warning
from torch.utils.data import Subset

from segkit.config import Config, config_to_dict, load_config
from segkit.data.cache import available_memory_bytes, memory_cache_plan
from segkit.data.cases import DatasetIndex
from segkit.data.fingerprint import CaseStats
from segkit.data.index import load_dataset
from segkit.data.label_names import class_name_list, declared_names
from segkit.data.loaders import training_loader, validation_dataset
from segkit.data.presets import resolve_from_fingerprint
from segkit.data.splits import choose_split
from segkit.data.transforms import seed_everything
from segkit.engine.checkpoint import (
    Checkpoint,
    Snapshot,
    load_checkpoint,
    load_resume_state,
    remove_stale,
    save_checkpoint,
)
from segkit.engine.cpu_bf16 import refuse_faulty_cpu_bf16
from segkit.engine.distributed import (
    DistEnv,
    barrier,
    broadcast_buffers,
    dist_env,
    gather_rows,
    init_distributed,
    mean_over_ranks,
    shard_indices,
    shutdown,
    wrap_model,
)
from segkit.engine.losses import build_loss
from segkit.engine.optim import build_optimizer, build_scheduler
from segkit.engine.run_files import CONFIG_YAML, SPLITS, clear_run
from segkit.engine.run_log import RunLog, summary_table
from segkit.engine.step import Optimisation, make_ema, make_scaler
from segkit.engine.trainer import Schedule, Trainer, TrainState
from segkit.engine.validation import CaseScores, rows_to_scores, score_volumes, scores_to_rows, summarise
from segkit.errors import CheckpointError, ConfigError, DataError, SegkitError
from segkit.inference.predictor import prepare_for_inference
from segkit.inference.slicewise import as_volume_model
from segkit.inference.sliding_window import WindowSettings, sliding_window_logits
from segkit.io.atomic import atomic_write_text
from segkit.models import build_model
from segkit.models.space_to_depth import use_space_to_depth_stems
from segkit.runtime import autocast_dtype, channels_last_format, resolve_device, use_channels_last


@dataclass(frozen=True)
class TrainResult:
    """Where the run went and how it ended."""

    run_dir: Path
    state: TrainState
    model: torch.nn.Module  # the trained weights (not the EMA copy)


def checked_config(cfg: Config, index: DatasetIndex, console: Console) -> tuple[Config, list[CaseStats]]:
    """Run the (cached) dataset check; stop on errors; resolve fingerprint-derived settings. Also returns the
    statistics (shape, spacing) of the training cases."""
    result, fingerprint = check_dataset(cfg.data.root, cfg.data.format, index, model_classes=cfg.model.num_classes,
                                        image_dims=cfg.data.image_dims)
    if not result.ok:
        console.print(problem_table(result.errors, cfg.data.root))
        first, root = result.errors[0], cfg.data.root
        raise DataError(f"{first.file}: {first.message} ({len(result.errors)} problem(s) in the dataset {root}, all "
                        f"listed above; fix them or remove the cases, then train again — 'segkit data check {root}' "
                        "re-checks)")
    training = {case.case_id for case in index.training}
    stats = [case for case in result.stats if case.case_id in training]
    return cfg.model_copy(update={"data": resolve_from_fingerprint(cfg.data, fingerprint)}), stats


def _check_replaceable(run_dir: Path) -> None:
    """A non-empty ``run_dir`` may only be a segkit run (its ``config.yaml``) that does not hold the working
    directory: anything else is refused, with or without ``--overwrite``."""
    resolved, cwd = run_dir.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise SegkitError(f"run_dir {run_dir} is the working directory or holds it, not a run folder — choose a "
                          "run folder with --set run_dir=runs/NAME")
    if run_dir.is_symlink() or not (run_dir / CONFIG_YAML).is_file():
        raise SegkitError(f"run_dir {run_dir} is not empty and holds no segkit run (no config.yaml), so neither "
                          "--overwrite nor --resume applies — choose a new folder with --set run_dir=... or empty "
                          "this one")


def prepare_run_dir(cfg: Config, overwrite: bool, console: Console | None = None) -> Path:
    """Create ``run_dir``; an existing run is kept unless ``overwrite``, which replaces the run's own files and
    keeps any others."""
    run_dir = Path(cfg.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise SegkitError(f"run_dir {run_dir} is a file, not a folder; choose a run folder with --set run_dir=...")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        _check_replaceable(run_dir)
        if not overwrite:
            resumable = (run_dir / "last" / "weights.safetensors").is_file()
            go_on = f", --resume {run_dir} to continue it" if resumable else ""
            raise SegkitError(f"run_dir {run_dir} already holds a run; pass --overwrite to replace it{go_on}, "
                              "or choose another with --set run_dir=...")
        kept = clear_run(run_dir)
        if kept and console is not None:
            console.print(f"--overwrite replaced the run in {run_dir} and kept what is not part of a run: "
                          f"{', '.join(kept)}")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegkitError(f"run_dir {run_dir}: cannot create the folder ({exc.strerror}); choose another with "
                          "--set run_dir=...") from None
    atomic_write_text(run_dir / CONFIG_YAML, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return run_dir


def _open_run_dir(cfg: Config, overwrite: bool, resume: bool, splits: dict, env: DistEnv,
                  console: Console) -> Path:
    """The run directory: created (rank 0) for a new run, checked against the split for a resumed one."""
    run_dir = Path(cfg.run_dir)
    if resume:
        saved = run_dir / SPLITS
        if saved.is_file() and json.loads(saved.read_text(encoding="utf-8")) != json.loads(json.dumps(splits)):
            raise DataError(f"{saved}: the dataset's training/validation split changed since the run started; "
                            "resume with the same data.root and seed, or start a new run")
        if env.is_main:
            remove_stale(run_dir)
    elif env.is_main:
        prepare_run_dir(cfg, overwrite, console)
        atomic_write_text(run_dir / SPLITS, json.dumps(splits, indent=1) + "\n")
    barrier()
    return run_dir


def build_optimisation(cfg: Config, model: torch.nn.Module, device: torch.device,
                       env: DistEnv | None = None) -> Optimisation:
    """Model on the device (memory format, DDP, compile), loss, optimiser, schedule, EMA, gradient scaler."""
    env = env or DistEnv()
    train = cfg.train
    channels_last = use_channels_last(device, train.memory_format, cfg.model.norm)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=channels_last_format(cfg.model.spatial_dims))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: the fastest kernels are found once
        use_space_to_depth_stems(model)  # the one-channel stem regrouped for tensor-core convolutions
    wrapped = wrap_model(model, env, device, train.sync_batchnorm)
    module = wrapped.module if env.distributed else wrapped  # inside DDP: the model with SyncBatchNorm converted
    forward = wrapped
    if train.compile:
        forward = torch.compile(wrapped, mode=None if train.compile is True else train.compile)
    amp_dtype = autocast_dtype(device, train.precision)
    optimizer = build_optimizer(module, train)
    reductions = module.output_reductions if cfg.model.deep_supervision else None
    weights = list(train.class_weights) if train.class_weights else None
    return Optimisation(forward, module, build_loss(train.loss, weights, reductions).to(device), optimizer,
                        build_scheduler(optimizer, train), device, amp_dtype, train.grad_clip, train.accumulate,
                        make_ema(module, train.ema) if train.ema else None, make_scaler(device, amp_dtype),
                        channels_last)


def _validator(cfg: Config, val_data: Dataset, device: torch.device, amp_dtype: torch.dtype | None,
               env: DistEnv, console: Console) -> Callable[[torch.nn.Module], dict]:
    """Whole-volume validation with the predictor's sliding window, sharded over ranks and gathered.

    The network validated is a copy of the model prepared as ``segkit predict`` prepares it (batch norm folded,
    convolutions packed for oneDNN on the CPU: 2.6× faster there than the eager model, equal to float rounding), so
    validation and prediction compute alike; each validated case prints one line (minutes each on a CPU)."""
    settings = WindowSettings.from_config(cfg)
    shard = Subset(val_data, list(shard_indices(len(val_data), env)))

    def predict_logits(network: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
        return sliding_window_logits(network, image, settings, amp_dtype)

    def report(scores: CaseScores, seconds: float, done: list[int]) -> None:
        done[0] += 1
        console.print(escape(f"  validated {scores.case_id} ({done[0]}/{len(shard)}) in {seconds:.1f} s"))

    def validate(model: torch.nn.Module) -> dict:
        network = as_volume_model(prepare_for_inference(copy.deepcopy(model), cfg, device, amp_dtype), cfg)
        done = [0]
        scores = score_volumes(network, shard, predict_logits, cfg.model.num_classes, device,
                               cfg.train.surface_tolerance, cfg.train.surface_metrics,
                               on_case=lambda case, seconds: report(case, seconds, done))
        return summarise(rows_to_scores(gather_rows(scores_to_rows(scores, cfg.model.num_classes), device)))

    return validate


def _resumable_checkpoint(run_dir: Path, cfg: Config) -> Checkpoint:
    """``run_dir``'s last/ checkpoint, once its config is shown to allow ``cfg``'s changes — before the split is
    compared, so that a ``--set seed=…`` is named as the key it is rather than as a changed split."""
    last = run_dir / "last"
    if not (last / "weights.safetensors").is_file():
        raise CheckpointError(f"{run_dir}: no last/ checkpoint to resume from (the run stopped before its first save); "
                              "start it again with --overwrite instead of --resume")
    checkpoint = load_checkpoint(last)
    _same_network_and_inputs(checkpoint.config, cfg, run_dir)
    return checkpoint


def _resume_into(trainer: Trainer, checkpoint: Checkpoint, run_dir: Path, cfg: Config, is_main: bool) -> None:
    train_weights, resume = load_resume_state(checkpoint.path)
    trainer.restore(checkpoint.weights, train_weights, resume, checkpoint.state)
    if is_main:  # the run goes on with the --set overrides: its config.yaml says so
        atomic_write_text(run_dir / CONFIG_YAML, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


RESUME_MAY_CHANGE = {
    "model": {"encoder_weights"},  # only used to build the first step's model
    # where the files are and how they are loaded (a moved splits file is checked by comparing the splits)
    "data": {"root", "splits_file", "num_workers", "cache", "cache_dir"},
}


def _warn_on_other_processes(saved: int, now: int, batch_size: int, console: Console) -> None:
    """A run resumed on another number of processes goes on with another global batch and sample streams."""
    if saved != now:
        console.print(f"warning: this run trained on {saved} process(es) (global batch {saved * batch_size}); "
                      f"resumed on {now}, it goes on with a global batch of {now * batch_size} and other sample "
                      f"streams — resume with --gpus {saved} (torchrun) to continue it exactly", style="yellow")


def _say_complete(trainer: Trainer, run_dir: Path, console: Console) -> None:
    """What a resume of a finished run says instead of training on."""
    why = "train.stop_at_dice reached" if trainer.reached_target() else \
        f"step {trainer.state.global_step} of {trainer.schedule.total_steps}"
    console.print(f"{run_dir} is complete ({why}); nothing to train — raise train.epochs with --set to continue it")


RESUME_KEEPS = {  # keys outside model/data a resumed run keeps, and why
    "seed": "it chose the split and seeds every training sample",
    "train.optimizer": "its saved state does not fit another optimiser",
    "train.steps_per_epoch": "the epochs trained so far are counted in its steps; change train.epochs instead",
}


def _setting(cfg: Config, key: str) -> object:
    """The value of a dotted ``key`` (``train.optimizer``) of ``cfg``."""
    value: object = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _same_network_and_inputs(saved: Config, now: Config, run_dir: Path) -> None:
    """A resumed run trains the network it saved on images prepared as before: a ``--set model.…`` or a
    ``--set data.…`` that changes either (spacing, normalisation, split, …), or a change of a key in
    ``RESUME_KEEPS``, is refused in one line. A moved dataset (``data.root``) is allowed: the split check compares
    its cases."""
    for key, why in RESUME_KEEPS.items():
        before, after = _setting(saved, key), _setting(now, key)
        if after != before:
            raise ConfigError(f"{key}: the run in {run_dir} was trained with {before!r}, now {after!r} — a resumed "
                              f"run keeps it ({why}); drop that --set, or start a new run")
    for section, free in RESUME_MAY_CHANGE.items():
        before = getattr(saved, section).model_dump(mode="json")
        after = getattr(now, section).model_dump(mode="json")
        for key in (key for key in before if key not in free):
            if after[key] != before[key]:
                raise ConfigError(f"{section}.{key}: the run in {run_dir} was trained with {before[key]!r}, now "
                                  f"{after[key]!r} — a resumed run keeps its model and preprocessing; drop that "
                                  "--set, or start a new run")


def resumed_config(run_dir: Path, overrides: list[str]) -> Config:
    """The config saved in ``run_dir`` (with ``--set`` overrides), pointing at ``run_dir`` wherever it now is."""
    saved = Path(run_dir) / CONFIG_YAML
    if not Path(run_dir).is_dir():
        what = "a file, not a run folder" if Path(run_dir).is_file() else "no such folder"
        raise SegkitError(f"{run_dir}: {what}; pass the run_dir of a run started with segkit train")
    if not saved.is_file():
        raise SegkitError(f"{run_dir}: no config.yaml, so not a segkit run directory; pass the run_dir of a run "
                          "started with segkit train")
    cfg = load_config(str(saved), overrides)
    return cfg.model_copy(update={"run_dir": Path(run_dir)})


def _absolute_paths(cfg: Config) -> Config:
    """``data.root`` and ``data.cache_dir`` as absolute paths, so the run's config.yaml (and ``--resume``) finds the
    dataset from any working directory."""
    data = cfg.data
    paths = {"root": data.root.absolute()} | ({"cache_dir": data.cache_dir.absolute()} if data.cache_dir else {})
    return cfg.model_copy(update={"data": data.model_copy(update=paths)})


def run_training(cfg: Config, overwrite: bool = False, console: Console | None = None,
                 resume: bool = False) -> TrainResult:
    """Train the configured model (or continue the run in ``run_dir`` with ``resume``); writes ``best/``,
    ``last/``, ``metrics.jsonl`` and ``curves.png`` under ``run_dir``. Under torchrun, runs DDP."""
    env = dist_env()
    console = (console or Console()) if env.is_main else Console(quiet=True)  # under torchrun rank 0 speaks
    cfg = _absolute_paths(cfg)
    seed_everything(cfg.seed)
    model = build_model(cfg.model)
    index = load_dataset(cfg.data.root, cfg.data.format)
    check_trainable(cfg, model.size_divisor, index, env.world)
    if (warning := small_deepest_stage_warning(cfg, model.size_divisor)) is not None:
        console.print(f"warning: {warning}", style="yellow")
    if cfg.train.albumentations:  # imported only then: albumentations takes a second to import
        from segkit.data.albu import check_on_a_patch

        check_on_a_patch(list(cfg.train.albumentations), cfg.model.in_channels, cfg.train.patch_size, cfg.seed)
    cfg, stats = checked_config(cfg, index, console)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # processes on this machine, each with its own cache
    plan = memory_cache_plan(cfg.data, [(c.shape, c.spacing) for c in stats], cfg.model.in_channels, local,
                             available_memory_bytes())
    if plan is not None:
        console.print(plan)
    data = cfg.data
    train_cases, val_cases, splits = choose_split(index.training, data, cfg.seed)
    device = init_distributed(env, resolve_device(cfg.train.device, "train.device"))
    try:
        refuse_faulty_cpu_bf16(cfg, model, device, autocast_dtype(device, cfg.train.precision))  # before run_dir
        return _train(cfg, model, train_cases, val_cases, splits, device, env, console, overwrite, resume)
    finally:
        shutdown()


def _train(cfg: Config, model: torch.nn.Module, train_cases: list, val_cases: list, splits: dict,
           device: torch.device, env: DistEnv, console: Console, overwrite: bool, resume: bool) -> TrainResult:
    checkpoint = _resumable_checkpoint(Path(cfg.run_dir), cfg) if resume else None
    run_dir = _open_run_dir(cfg, overwrite, resume, splits, env, console)
    opt = build_optimisation(cfg, model, device, env)
    schedule = Schedule(cfg.train.epochs, cfg.train.steps_per_epoch, cfg.train.val_every, cfg.train.checkpoint_every,
                        cfg.train.stop_at_dice)
    validate = _validator(cfg, validation_dataset(cfg, val_cases), device, opt.amp_dtype, env, console)
    names = class_name_list(declared_names(cfg.data.root), cfg.model.num_classes)  # dataset.json's, for tables
    with RunLog(run_dir, cfg.model.num_classes, enabled=env.is_main, class_names=names) as log:
        trainer = Trainer(opt, schedule, validate,
                          save=lambda name, snap: save_checkpoint(run_dir, name, cfg, named(snap, names))
                          if env.is_main else None,
                          log=log, console=console, is_main=env.is_main,
                          reduce=lambda value: mean_over_ranks(value, device),
                          sync=lambda: broadcast_buffers(opt.module, opt.ema))
        if checkpoint is not None:
            _resume_into(trainer, checkpoint, run_dir, cfg, env.is_main)
            _warn_on_other_processes(trainer.state.processes, env.world, cfg.train.batch_size, console)
            log.truncate_after(trainer.state.global_step)
            if trainer.is_finished():
                _say_complete(trainer, run_dir, console)
                return TrainResult(run_dir, trainer.state, opt.module)
            console.print(f"resuming {run_dir} at step {trainer.state.global_step} (epoch {trainer.state.epoch + 1})")
        else:
            console.print(f"training {cfg.model.encoder} UNet on {len(train_cases)} cases, validating on "
                          f"{len(val_cases)} ({device}{f' × {env.world} processes' if env.distributed else ''}); "
                          f"run dir {run_dir}")
        trainer.state.processes = env.world
        loader = training_loader(cfg, train_cases, trainer.state.global_step, env.rank, env.world)
        state = trainer.fit(loader)
    barrier()
    if state.history:
        console.print(summary_table(state.history, names))
    console.print(closing_line(state, run_dir))
    return TrainResult(run_dir, state, opt.module)


def named(snapshot: Snapshot, class_names: list[str] | None) -> Snapshot:
    """The snapshot with the dataset's class names in its state, for what uses the checkpoint (``predict``'s
    preview legend); training's state ignores the key when it resumes."""
    if class_names is None:
        return snapshot
    return dataclasses.replace(snapshot, state={**snapshot.state, "class_names": class_names})


def closing_line(state: TrainState, run_dir: Path) -> str:
    """The last line of a run: the best validation and its checkpoint, or why there is no ``best/``."""
    if state.best_epoch < 0:  # every validation's mean Dice was NaN: no class in any label nor prediction
        return (f"no validation gave a mean foreground Dice (no foreground class in the validation labels nor in "
                f"the predictions), so there is no best/ checkpoint; the trained model is {run_dir / 'last'}")
    return (f"best mean foreground Dice {state.best_metric:.4f} at epoch {state.best_epoch}; "
            f"checkpoint {run_dir / 'best'}")

