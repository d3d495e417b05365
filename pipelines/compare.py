"""Compare pipeline: plan variants × seeds → for each unfinished run train, predict the held-out cases, score
them, measure cost and artefacts, store ``result.json`` → one report over every finished run."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from segkit.pipelines.evaluate import evaluate_folders
from segkit.pipelines.evaluation_report import evaluation_csv
from segkit.pipelines.predict import PredictOptions, run_prediction
from segkit.pipelines.train import run_training

from segkit.compare.measure import PANEL, load_predictor, measure_cases, save_panel
from segkit.compare.plan import (
    PREDICTIONS,
    RESULT,
    RUN_SPEC,
    TRAIN_DIR,
    PlannedRun,
    Variant,
    find_variant,
    is_finished,
    plan_record,
    plan_runs,
)
from segkit.compare.report import ReportFiles, write_report
from segkit.compare.results import PLAN, Scores, build_result, load_plan, load_results, write_json
from segkit.compare.schedule import LOG, Job, gpu_ids, run_on_gpus
from segkit.compare.slices import foreground_centre
from segkit.compare.spec import CompareRequest, resolve_comparison
from segkit.config import config_from_dict, config_to_dict
from segkit.data.cases import Case
from segkit.data.index import load_dataset
from segkit.errors import DataError, SegkitError
from segkit.io.atomic import atomic_write_text, full_suffix, own_folder
from segkit.models.summary import summarize
from segkit.runtime import resolve_device

REFERENCE = "reference"  # links to the held-out label files, named by case id, for evaluate_folders


def held_out_cases(run: PlannedRun) -> list[Case]:
    """The dataset's test cases that have reference labels (never used in training or validation)."""
    data = run.config.data
    cases = [case for case in load_dataset(data.root, data.format).test if case.label is not None]
    if not cases:
        raise DataError(f"data.root {data.root}: no held-out (test) cases with reference labels, e.g. imagesTs/ with "
                        "labelsTs/ (docs/FORMATS.md); compare scores the variants on them — add labelled test cases")
    return cases


def _predict(run: PlannedRun, cases: list[Case], console: Console) -> list[float]:
    """Label maps of the held-out cases in ``predictions/`` with the product pipeline; seconds per case."""
    inputs = [str(path) for case in cases for path in case.images]
    own_folder(run.folder / PREDICTIONS)  # a link planted there would take the predictions elsewhere
    results = run_prediction(run.folder / TRAIN_DIR, inputs, run.folder / PREDICTIONS,
                             PredictOptions(device=run.config.train.device, overwrite=True), console)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise DataError(f"{run.name}: {len(failed)} held-out case(s) failed to predict; first: {failed[0].message}")
    return [r.seconds for r in results]


def _link_references(run: PlannedRun, cases: list[Case]) -> Path:
    """``reference/labels/CASE<suffix>`` → each held-out label file (and ``reference/dataset.json`` for the class
    names), so that ``evaluate_folders`` scores exactly these cases."""
    folder = run.folder / REFERENCE / "labels"
    shutil.rmtree(own_folder(folder.parent))  # a link planted in its place is removed first, never followed
    folder.mkdir(parents=True)
    manifest = Path(run.config.data.root) / "dataset.json"
    pairs = [(folder / f"{c.case_id}{full_suffix(c.label)}", c.label) for c in cases]
    for link, target in pairs + ([(folder.parent / "dataset.json", manifest)] if manifest.is_file() else []):
        try:
            os.symlink(Path(target).resolve(), link)
        except FileExistsError:
            raise
        except OSError:  # no symlinks on this filesystem
            shutil.copyfile(target, link)
    return folder


def _evaluate(run: PlannedRun, cases: list[Case]) -> Scores:
    """Dice, HD95 and NSD of the held-out predictions (``segkit evaluate``'s code); also ``evaluation.csv``."""
    cfg = run.config
    result = evaluate_folders(run.folder / PREDICTIONS, _link_references(run, cases), cfg.model.num_classes,
                              cfg.train.surface_tolerance)
    atomic_write_text(run.folder / PREDICTIONS / "evaluation.csv", evaluation_csv(result))
    return Scores(result.case_ids, result.class_names, result.dice, result.hd95, result.nsd, result.tolerance_mm)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def run_one(run: PlannedRun, console: Console) -> None:
    """Train, predict, score and measure one run; its ``result.json`` is written last, so it marks completion."""
    started = time.perf_counter()
    run_training(run.config, overwrite=True, console=console)
    train_seconds = time.perf_counter() - started
    cases = held_out_cases(run)
    predict_seconds = _predict(run, cases, console)
    scores = _evaluate(run, cases)
    device = resolve_device(run.config.train.device, "train.device")
    panel_case = cases[0]
    measured, method, panel = measure_cases(load_predictor(run.folder / TRAIN_DIR, device), cases,
                                            (panel_case, foreground_centre(panel_case.label)))
    if panel is not None:
        save_panel(run.folder / PANEL, panel)
    cost = summarize(run.config.model, tuple(run.config.train.patch_size))
    prediction = f"{PREDICTIONS}/{panel_case.case_id}{full_suffix(panel_case.image)}"
    extra = {"device": _device_name(device), "predict_seconds_per_volume": float(np.mean(predict_seconds)),
             "panel": {"case_id": panel_case.case_id, "image": str(panel_case.image.resolve()),
                       "label": str(panel_case.label.resolve()), "prediction": prediction}}
    write_json(run.folder / RESULT, build_result(run, scores, measured, method, cost, train_seconds, extra))


def prepare_run(run: PlannedRun) -> None:
    """``run.json`` in the run folder: everything a worker process needs to execute the run."""
    run.folder.mkdir(parents=True, exist_ok=True)
    write_json(run.folder / RUN_SPEC, {"slug": run.variant.slug, "variant": [list(v) for v in run.variant.values],
                                       "seed": run.seed, "config": config_to_dict(run.config)})


def load_prepared(folder: Path) -> PlannedRun:
    """The run prepared in ``folder`` (by :func:`prepare_run`)."""
    path = Path(folder) / RUN_SPEC
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the run description ({exc}); rerun segkit compare") from None
    variant = Variant(tuple((key, value) for key, value in data["variant"]), data["slug"])
    return PlannedRun(variant, int(data["seed"]), Path(folder), config_from_dict(data["config"], str(path)))


def run_worker(folder: Path, console: Console | None = None) -> None:
    """``segkit compare --worker FOLDER``: execute one prepared run (started by the GPU scheduler)."""
    run_one(load_prepared(folder), console or Console())


def _in_process(todo: list[PlannedRun], console: Console) -> list[str]:
    failures = []
    for i, run in enumerate(todo, start=1):
        console.rule(escape(f"run {i}/{len(todo)}: {run.variant.label}, seed {run.seed}"))
        try:
            run_one(run, console)
        except (SegkitError, RuntimeError, OSError) as exc:  # one failed run must not lose the others
            failures.append(f"{run.name}: {exc}")
            console.print(f"[red]run {escape(run.name)} failed[/]: {escape(str(exc))}")
    return failures


def _on_gpus(todo: list[PlannedRun], gpus: list[str], console: Console) -> list[str]:
    failures: list[str] = []

    def finished(job: Job, code: int) -> None:
        if code:
            failures.append(f"{job.name}: exit code {code}, see {job.folder / LOG}")
        console.print(escape(f"{job.name} {'failed' if code else 'finished'}"))

    run_on_gpus([Job(run.name, run.folder) for run in todo], gpus,
                lambda job, gpu: console.print(escape(f"{job.name} started on GPU {gpu} (log {job.folder / LOG})")),
                finished)
    return failures


def run_compare(request: CompareRequest, gpus: str = "auto", console: Console | None = None) -> ReportFiles:
    """Plan the comparison, run what is not finished (skipping finished runs), then write the report."""
    console = console or Console()
    comparison = resolve_comparison(request)
    variants, runs = plan_runs(comparison)
    for note in comparison.notes:
        console.print(escape(note), highlight=False)
    baseline = find_variant(variants, comparison.baseline)
    devices = gpu_ids(gpus)
    held_out = sorted(case.case_id for case in held_out_cases(runs[0]))  # data.* is the same in every run
    _check_out(comparison.out)
    todo = [run for run in runs if not is_finished(run, held_out)]  # refuses finished runs made otherwise
    _create_out(comparison.out)
    write_json(comparison.out / PLAN, plan_record(comparison, variants, runs, baseline))  # only once all checks passed
    console.print(escape(f"{len(runs)} runs ({len(variants)} variants × {comparison.seeds} seeds) in "
                         f"{comparison.out}: {len(runs) - len(todo)} finished already (skipped), {len(todo)} to run"
                         + (f" on {len(devices)} GPUs" if devices and todo else "")))
    for run in todo:
        prepare_run(run)
    failures = _on_gpus(todo, devices, console) if devices and todo else _in_process(todo, console)
    files = rebuild_report(comparison.out, console)
    if failures:
        raise SegkitError(f"{len(failures)} of {len(todo)} run(s) failed (first: {failures[0]}); the report covers the "
                          "finished runs — run the same command again to retry the others")
    return files


def _check_out(out: Path) -> None:
    """A folder that holds other things but no comparison is refused (its files would be replaced by the
    report's)."""
    if out.is_dir() and any(out.iterdir()) and not (out / PLAN).is_file():
        raise DataError(f"--out {out}: a folder with other files and no {PLAN}, so not a segkit comparison; "
                        "choose a new or empty folder")


def _create_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"--out {out}: cannot create the folder ({exc.strerror or exc}); choose another path") from None


def rebuild_report(out: Path, console: Console | None = None) -> ReportFiles:
    """Write ``report.md``, ``report.html`` and ``summary.csv`` in ``out`` from the stored results."""
    console = console or Console()
    plan = load_plan(Path(out))
    results = load_results(Path(out), plan)
    files = write_report(Path(out), plan, results)
    console.print(escape(f"report of {len(results)} finished run(s): {files.markdown} and {files.html}"))
    return files
