"""Predict pipeline: checkpoint → model → label maps for every input, written on each input's grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from segkit.pipelines.predict_inputs import InputProblem, collect_inputs, group_channels
from segkit.pipelines.predict_jobs import CaseResult, Job, PredictOptions, config_for, plan_jobs
from segkit.pipelines.predict_report import STATUSES, progress_line, results_table, summary_line
from segkit.pipelines.predict_writer import Write, make_writer

from segkit.config import Config
from segkit.data.cases import Case
from segkit.engine.checkpoint import CONFIG, WEIGHTS, Checkpoint, load_checkpoint, load_weights
from segkit.engine.distributed import DistEnv, barrier, dist_env, gather_rows, init_distributed, shutdown
from segkit.errors import DataError, SegkitError
from segkit.inference.case_loader import CaseLoader
from segkit.inference.ensemble import Ensemble, ensemble_config
from segkit.inference.manifest import Manifest, check_manifest_files, file_signature, merge_manifests, read_all
from segkit.inference.pipeline import Outcome, Stages, run_pipeline
from segkit.inference.predictor import Predictor
from segkit.io.atomic import prove_writable, remove_stale_temps
from segkit.models import build_model
from segkit.runtime import arithmetic_name, resolve_device

__all__ = ["CaseResult", "PredictOptions", "checkpoint_settings", "load_models", "run_prediction"]


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
        return record, CaseResult(job.case.case_id, job.case.image, job.target, "written", seconds,
                                  warning=outcome.result.get("preview_error", ""))
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
    cfg = config_for(cfg, options)
    cases, problems = group_channels(sources, cfg.model.in_channels, cfg.data.image_dims)
    if problems and not cases:  # nothing to predict: stop before --output is created
        others = f" ({len(problems) - 1} other input(s) cannot be predicted either)" if len(problems) > 1 else ""
        raise DataError(problems[0].message + others)
    requested = resolve_device(options.device)  # an unavailable --device is refused before --output is created
    check_manifest_files(output_dir)
    _prepare_output(output_dir)
    device = init_distributed(env, requested)
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
    jobs, results = plan_jobs(cases, output_dir, manifest, settings, options)
    skipped = sum(r.status == "skipped" for r in results)
    shards = f" (rank 0's share; {env.world} processes in all)" if env.distributed else ""
    weights = ckpts[0].path if len(ckpts) == 1 else f"an ensemble of {len(ckpts)} checkpoints"
    console.print(escape(f"predicting {len(jobs)} case(s) with {weights} on {device}{shards}")
                  + (f"; {skipped} skipped (complete or not ours)" if skipped else ""))
    if jobs:
        write = make_writer(manifest, options, cfg, ckpts[0].class_names)
        stages = _stages(model, cfg, device, options, write)
        planned = len(results)  # skipped, or failed while planning
        # one intra-op thread per helper thread: OpenMP teams of helpers and the network on the same cores
        # spin against each other (measured on 2 cores: the network's compute went from 14 s to 26 s per case)
        for outcome in run_pipeline(jobs, stages, options.workers, options.workers, expected=(SegkitError, OSError),
                                    thread_setup=lambda: torch.set_num_threads(1)):
            record, result = _record(outcome, settings, env.rank)
            manifest.append(record)
            results.append(result)
            console.print(escape(progress_line(result, outcome.seconds, len(results) - planned, len(jobs))))
    return results


def _stages(model: torch.nn.Module, cfg: Config, device: torch.device, options: PredictOptions,
            write: Write) -> Stages:
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
                                  str(record.get("error") or ""), str(record.get("preview_error") or "")))
    return _in_order(cases, results)


def _in_order(cases: list[Case], results: list[CaseResult]) -> list[CaseResult]:
    order = {case.case_id: i for i, case in enumerate(cases)}
    return sorted(results, key=lambda r: order.get(r.case_id, len(order)))
