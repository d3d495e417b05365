"""Predict pipeline: checkpoint → model → label maps for every input, written on each input's grid."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from segkit.pipelines.predict_inputs import InputProblem, collect_inputs, group_channels, output_path_for

from segkit.config import Config
from segkit.data.cases import Case
from segkit.data.check_2d import PLANAR_SUFFIXES
from segkit.engine.checkpoint import CONFIG, WEIGHTS, Checkpoint, load_checkpoint, load_weights
from segkit.engine.distributed import DistEnv, barrier, dist_env, gather_rows, init_distributed, shutdown
from segkit.engine.metrics import label_measures
from segkit.errors import ConfigError, DataError, SegkitError
from segkit.inference.case_loader import CaseLoader
from segkit.inference.ensemble import Ensemble, ensemble_config
from segkit.inference.manifest import (
    MANIFEST,
    Manifest,
    check_manifest_files,
    file_signature,
    merge_manifests,
    read_all,
)
from segkit.inference.pipeline import Outcome, Stages, run_pipeline
from segkit.inference.postprocess import keep_largest_components
from segkit.inference.predictor import Prediction, Predictor
from segkit.io.atomic import full_suffix, prove_writable, remove_stale_temps
from segkit.io.image_io import read_image_array, write_like, write_probabilities
from segkit.io.side_files import preview_path, probabilities_path
from segkit.models import build_model
from segkit.runtime import arithmetic_name, resolve_device


@dataclass(frozen=True)
class CaseResult:
    """Outcome of one input."""

    case_id: str
    source: Path
    output: Path | None
    status: str  # written | skipped | failed
    seconds: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class PredictOptions:
    """Command-line choices on top of the checkpoint's config."""

    device: str = "auto"
    overwrite: bool = False
    tta: bool = False
    probabilities: bool = False
    overlap: float | None = None
    sw_batch_size: int | str | None = None  # an int or "auto"
    workers: int = 2  # reader threads and writer threads each
    preview: bool = False
    precision: str | None = None  # auto, bf16, fp16 or fp32; default: the checkpoint's train.precision
    keep_largest: tuple[int, ...] | None = None  # labels to reduce to their largest component; default: the config's


@dataclass(frozen=True)
class Job:
    """One case to predict and where its outputs go."""

    case: Case
    target: Path
    signature: list[list[int]]
    redo: bool = False  # the outputs there are segkit's from an earlier run (or --overwrite): side files go too


def _config_for(cfg: Config, options: PredictOptions) -> Config:
    infer = {k: v for k, v in {"overlap": options.overlap, "sw_batch_size": options.sw_batch_size,
                               "keep_largest": options.keep_largest}.items() if v is not None}
    outside = [label for label in options.keep_largest or () if not 0 < label < cfg.model.num_classes]
    if outside:
        raise ConfigError(f"--keep-largest {outside[0]}: the checkpoint predicts labels 1..{cfg.model.num_classes - 1}"
                          " (0 is background); list foreground labels")
    cfg = cfg.model_copy(update={"infer": cfg.infer.model_copy(update=infer)}) if infer else cfg
    if options.precision is None:
        return cfg
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": options.precision})})


def _side_files(target: Path, options: PredictOptions) -> list[Path]:
    """The files beside the label map that ``options`` ask for."""
    return ([probabilities_path(target)] if options.probabilities else []) + (
        [preview_path(target)] if options.preview else [])


def _plan(cases: list[Case], output_dir: Path, manifest: Manifest, settings: dict, options: PredictOptions
          ) -> tuple[list[Job], list[CaseResult]]:
    """Jobs to run, and results for cases that are skipped (complete already) or cannot be planned."""
    jobs, results, overwrite = [], [], options.overwrite
    for case in cases:
        try:
            target = output_path_for(case, output_dir)
            signature = file_signature(case.images)
        except (SegkitError, OSError) as exc:
            results.append(CaseResult(case.case_id, case.image, None, "failed", message=str(exc)))
            continue
        side_files = _side_files(target, options)
        if not overwrite and manifest.is_done(case.case_id, target, signature, settings, side_files):
            results.append(CaseResult(case.case_id, case.image, target, "skipped", message="complete in manifest"))
        elif not overwrite and not manifest.was_ours(case.case_id, target) and (
                taken := next((p for p in [target, *side_files] if p.exists()), None)):
            results.append(CaseResult(case.case_id, case.image, target, "skipped",
                                      message=f"{taken.name} exists, not written by segkit here (use --overwrite to "
                                              "redo)"))
        else:
            jobs.append(Job(case, target, signature, overwrite or manifest.was_ours(case.case_id, target)))
    return jobs, results


def write_case_preview(job: Job, labels: np.ndarray, affine: np.ndarray) -> None:
    """Three orthogonal slices through the largest predicted structure (one panel for a 2D image), with the
    overlay (``--preview``). Any failure becomes one line naming the preview (a DataError: it fails this case
    only, never the batch)."""
    from segkit.report.preview import write_preview

    target = preview_path(job.target)
    try:
        image, _ = read_image_array(job.case.image)
        spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:-1, :-1], axis=0)  # 4×4 in 3D, 3×3 in 2D
        write_preview(target, image, labels, spacing, title=job.case.case_id)
    except (SegkitError, OSError):
        raise
    except Exception as exc:  # matplotlib and numpy raise many types
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataError(f"{target}: cannot draw the preview ({type(exc).__name__}: {reason}); the label map "
                        f"{job.target.name} was written — run again without --preview to record it as written"
                        ) from None


def _stored_order(job: Job, probabilities: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and affine as saved: voxel order (i, j, k) for volumes; for a PNG or TIFF input (rows,
    columns), as imaging libraries (PIL, imageio, scikit-image) read the file, and the affine's index columns
    swapped to match."""
    if probabilities.ndim != 3 or full_suffix(job.case.image).lower() not in PLANAR_SUFFIXES:
        return probabilities, affine
    return probabilities.transpose(0, 2, 1), np.asarray(affine)[:, [1, 0, *range(2, np.asarray(affine).shape[1])]]


def _remove_stale_side_files(job: Job, probabilities: bool, preview: bool) -> None:
    for path, written in ((probabilities_path(job.target), probabilities), (preview_path(job.target), preview)):
        if not written:
            path.unlink(missing_ok=True)


def _write_failure(job: Job, exc: Exception) -> DataError:
    """One line for a case whose files could not be written: a full disk or permissions, or a library's refusal."""
    if isinstance(exc, OSError):
        return DataError(f"{job.target}: cannot write the prediction ({exc.strerror or exc}) — free disk space or fix "
                         "the permissions of --output, then run again (finished cases are skipped)")
    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    fix = ("check its header against the image's data (e.g. with nibabel)" if job.target.name.endswith(".nii.gz")
           else "save it as NIfTI (.nii.gz) and predict that copy")
    return DataError(f"{job.target}: cannot write the prediction on the grid of {job.case.image.name} "
                     f"({type(exc).__name__}: {reason}) — {fix}")


def _writer(manifest: Manifest, settings: dict, options: PredictOptions, cfg: Config):
    level, keep = cfg.infer.compression_level, cfg.infer.keep_largest

    def write(job: Job, computed: tuple[Prediction, np.ndarray]) -> dict[str, dict[str, float]]:
        prediction, affine = computed
        counts = prediction.voxel_counts
        if keep:  # on the host, in this writer thread: scipy's labelling (inference.postprocess)
            counts = counts.copy()
            for label, removed in keep_largest_components(prediction.labels, keep).items():
                counts[label] -= removed
                counts[0] += removed
        manifest.append({"case_id": job.case.case_id, "output": str(job.target), "status": "started"})
        try:  # every file is written atomically: a failed write leaves no partial file under a final name
            write_like(prediction.labels, job.case.image, job.target, level)
            if prediction.probabilities is not None:
                write_probabilities(probabilities_path(job.target), *_stored_order(job, prediction.probabilities,
                                                                                   affine))
            if options.preview:
                write_case_preview(job, prediction.labels, affine)
            if job.redo:  # an earlier run's probabilities or preview would no longer match the label map
                _remove_stale_side_files(job, prediction.probabilities is not None, options.preview)
        except SegkitError:
            raise
        except Exception as exc:  # SimpleITK's writers raise RuntimeError, nibabel its own types: this case only
            raise _write_failure(job, exc) from None
        return label_measures(counts, affine)

    return write


def _prepare_output(output_dir: Path) -> None:
    """Create ``output_dir`` and prove it writable the way outputs are written, before any work."""
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"--output {output_dir}: is a file, not a folder — give a folder for the label maps")
    try:
        prove_writable(output_dir)
    except OSError as exc:
        raise DataError(f"--output {output_dir}: cannot write there ({exc.strerror or exc}) — choose a folder you "
                        "can write to, or fix its permissions") from None


def _record_problems(problems: list[InputProblem], output_dir: Path, env: DistEnv) -> list[CaseResult]:
    """Inputs that could not become cases: failed results, and (by rank 0) a ``failed`` line each in the
    manifest."""
    if env.is_main and problems:
        manifest = Manifest(output_dir)
        for problem in problems:
            manifest.append({"case_id": problem.case_id, "rank": env.rank, "inputs": [str(problem.source)],
                             "output": None, "status": "failed", "error": problem.message})
    return [CaseResult(p.case_id, p.source, None, "failed", message=p.message) for p in problems]


def _record(outcome: Outcome, settings: dict, rank: int) -> tuple[dict, CaseResult]:
    job: Job = outcome.item
    seconds = sum(outcome.seconds.values())
    base = {"case_id": job.case.case_id, "rank": rank, "inputs": [str(p) for p in job.case.images],
            "output": str(job.target),
            "input_signature": job.signature, "settings": settings,
            "seconds": {k: round(v, 4) for k, v in outcome.seconds.items()}}
    if outcome.ok:
        record = {**base, "status": "written", "error": None, **outcome.result,
                  "output_signature": file_signature([job.target])[0]}  # a rerun redoes a changed label map
        return record, CaseResult(job.case.case_id, job.case.image, job.target, "written", seconds)
    message = str(outcome.error) if isinstance(outcome.error, SegkitError) else (
        f"{job.case.image}: {type(outcome.error).__name__}: {outcome.error}")
    record = {**base, "status": "failed", "error": message}
    return record, CaseResult(job.case.case_id, job.case.image, None, "failed", seconds, message)


def run_prediction(checkpoint: Path | Sequence[Path], inputs: list[str], output_dir: Path,
                   options: PredictOptions | None = None, console: Console | None = None) -> list[CaseResult]:
    """Predict every input through the reader → device → writer pipeline; bad cases are reported and
    skipped, the rest finish; ``manifest.jsonl`` records each case and lets a rerun skip finished ones.

    Several checkpoints (e.g. the folds of a cross-validation) predict as an ensemble: their logits are averaged
    (``inference.ensemble``). Under torchrun the cases are sharded over the ranks (one GPU each); rank 0 merges
    the manifest and prints the table of all cases. Returns the results of every case (on every rank).
    """
    options, console = options or PredictOptions(), console or Console()
    env = dist_env()
    sources = collect_inputs(inputs)
    if any(output_dir.resolve() == s.parent.resolve() for s in sources):
        raise DataError(f"--output {output_dir} is an input folder; write predictions to another folder")
    ckpts, cfg, model = load_models([checkpoint] if isinstance(checkpoint, Path | str) else list(checkpoint))
    cfg = _config_for(cfg, options)
    cases, problems = group_channels(sources, cfg.model.in_channels, cfg.data.image_dims)
    if problems and not cases:  # nothing to predict: stop before --output is created
        others = f" ({len(problems) - 1} other input(s) cannot be predicted either)" if len(problems) > 1 else ""
        raise DataError(problems[0].message + others)
    check_manifest_files(output_dir)
    _prepare_output(output_dir)
    device = init_distributed(env, resolve_device(options.device))
    try:
        results = _predict_shard(ckpts, model, cfg, cases[env.rank::env.world], output_dir, options, device, env,
                                 console if env.is_main else Console(quiet=True))
        results = _gather_results(cases, results, output_dir, device, env)
        results += _record_problems(problems, output_dir, env)
    finally:
        shutdown()
    if env.is_main:
        console.print(results_table(results))
        console.print(escape(summary_line(results, output_dir)))
    return results


def load_models(paths: Sequence[Path]) -> tuple[list[Checkpoint], Config, torch.nn.Module]:
    """The checkpoints, the config to predict with and the model: one checkpoint's network, or an
    :class:`Ensemble` of several once they are checked to preprocess alike (the first one's config then).
    Weights that do not fit their config are refused here, before ``--output`` is created."""
    ckpts = [load_checkpoint(Path(p)) for p in paths]
    cfg = ensemble_config([(ckpt.path, ckpt.config) for ckpt in ckpts])
    models = []
    for ckpt in ckpts:
        model = build_model(ckpt.config.model, initialise=False)  # every weight comes from the checkpoint
        load_weights(model, ckpt)
        models.append(model)
    return ckpts, cfg, models[0] if len(models) == 1 else Ensemble(models)


def checkpoint_settings(ckpts: Sequence[Checkpoint]) -> dict:
    """What the manifest records of the checkpoint(s), so that a rerun with other weights redoes every case: the
    path, the step, and the size and modification time of the weights and config files — a checkpoint folder
    whose files were replaced in place (new weights copied over, ``infer.*`` edited in its config.json) keeps
    its path and often its step."""
    paths, steps = [str(c.path.resolve()) for c in ckpts], [c.state.get("global_step") for c in ckpts]
    files = [file_signature([c.path / WEIGHTS, c.path / CONFIG]) for c in ckpts]
    if len(ckpts) == 1:
        return {"checkpoint": paths[0], "step": steps[0], "checkpoint_files": files[0]}
    return {"checkpoint": paths, "step": steps, "checkpoint_files": files}


def _predict_shard(ckpts: list[Checkpoint], model: torch.nn.Module, cfg: Config, cases: list[Case],
                   output_dir: Path, options: PredictOptions, device: torch.device, env: DistEnv,
                   console: Console) -> list[CaseResult]:
    if env.is_main:
        remove_stale_temps(output_dir)  # partial files of a killed earlier run (never under a final name)
    barrier()
    manifest = Manifest(output_dir, part=env.rank if env.distributed else None)
    settings = {**checkpoint_settings(ckpts), "tta": options.tta, "overlap": cfg.infer.overlap,
                "probabilities": options.probabilities,
                "precision": arithmetic_name(device, cfg.train.precision)}  # auto and fp32 on a CPU are one run
    if cfg.infer.keep_largest:  # only when set, so that manifests of earlier versions still match
        settings["keep_largest"] = sorted(set(cfg.infer.keep_largest))  # a set of labels: order does not matter
    jobs, results = _plan(cases, output_dir, manifest, settings, options)
    skipped = sum(r.status == "skipped" for r in results)
    shards = f" (rank 0's share; {env.world} processes in all)" if env.distributed else ""
    weights = ckpts[0].path if len(ckpts) == 1 else f"an ensemble of {len(ckpts)} checkpoints"
    console.print(escape(f"predicting {len(jobs)} case(s) with {weights} on {device}{shards}")
                  + (f"; {skipped} skipped (complete or not ours)" if skipped else ""))
    if jobs:
        stages = _stages(model, cfg, device, options, _writer(manifest, settings, options, cfg))
        # one intra-op thread per helper thread: OpenMP teams of helpers and the network on the same cores
        # spin against each other (measured on 2 cores: the network's compute went from 14 s to 26 s per case)
        for outcome in run_pipeline(jobs, stages, options.workers, options.workers, expected=(SegkitError, OSError),
                                    thread_setup=lambda: torch.set_num_threads(1)):
            record, result = _record(outcome, settings, env.rank)
            manifest.append(record)
            results.append(result)
    return results


def _stages(model: torch.nn.Module, cfg: Config, device: torch.device, options: PredictOptions,
            write: Callable[[Job, tuple[Prediction, np.ndarray]], dict[str, dict[str, float]]]) -> Stages:
    """The pipeline's stages. The reader threads start on the first cases before the model is moved to and
    prepared on the device (CUDA's start-up, packing, the CUDA graph's capture): that happens in ``warm_up``,
    meanwhile, so the first read — the one nothing else overlaps — is partly hidden behind it."""
    loader = CaseLoader(cfg, device)
    built: list[Predictor] = []

    def predictor() -> Predictor:
        if not built:
            built.append(Predictor(model, cfg, device, options.tta, options.probabilities, loader=loader))
        return built[0]

    return Stages(read=lambda job: loader.load(job.case.images),
                  compute=lambda image: (predictor().infer(image), np.asarray(image.meta["original_affine"])),
                  write=write, warm_up=lambda: predictor().warm_up())


STATUSES = ("written", "skipped", "failed")


def _gather_results(cases: list[Case], mine: list[CaseResult], output_dir: Path, device: torch.device,
                    env: DistEnv) -> list[CaseResult]:
    """Every case's result in input order; in a sharded run, gathered from all ranks (as tensors) and the
    manifest parts merged by rank 0."""
    if not env.distributed:
        merge_manifests(output_dir)
        return _in_order(cases, mine)
    index = {case.case_id: i for i, case in enumerate(cases)}
    rows = torch.tensor([[index[r.case_id], STATUSES.index(r.status), r.seconds] for r in mine],
                        dtype=torch.float64).reshape(-1, 3)
    everything = gather_rows(rows, device)  # also a barrier: every rank has finished its appends
    records = merge_manifests(output_dir) if env.is_main else {}
    barrier()
    if not env.is_main:
        records = read_all(output_dir)
    results = []
    for case_index, status, seconds in everything.tolist():
        case = cases[int(case_index)]
        record = records.get(case.case_id, {})
        output = Path(record["output"]) if status != STATUSES.index("failed") and record.get("output") else None
        results.append(CaseResult(case.case_id, case.image, output, STATUSES[int(status)], seconds,
                                  str(record.get("error") or "")))
    return _in_order(cases, results)


def _in_order(cases: list[Case], results: list[CaseResult]) -> list[CaseResult]:
    order = {case.case_id: i for i, case in enumerate(cases)}
    return sorted(results, key=lambda r: order.get(r.case_id, len(order)))


def summary_line(results: list[CaseResult], output_dir: Path) -> str:
    """``N written, M skipped, K failed`` and where the manifest is."""
    counts = {status: sum(r.status == status for r in results) for status in ("written", "skipped", "failed")}
    return (f"{counts['written']} written, {counts['skipped']} skipped, {counts['failed']} failed; "
            f"manifest {output_dir / MANIFEST}")


def _shown_path(path: Path | None) -> str:
    """``path`` relative to the working directory when it lies below it."""
    if path is None:
        return ""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def results_table(results: list[CaseResult]) -> Table:
    """Per-case table: status, seconds and the written file (or the reason it failed)."""
    table = Table(title="predictions")
    for column in ("case", "status", "seconds"):
        table.add_column(column, no_wrap=True)
    table.add_column("output / message", overflow="fold")
    for r in results:
        detail = _shown_path(r.output) if r.status != "failed" else r.message
        seconds = f"{r.seconds:.2f}" if r.status != "skipped" else "-"
        detail += f"  ({r.message})" if r.status == "skipped" else ""
        table.add_row(escape(r.case_id), r.status, seconds, escape(detail))  # names may hold [brackets]
    return table
