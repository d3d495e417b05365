"""Predict pipeline: checkpoint → model → label maps for every input, written on each input's grid."""

from __future__ import annotations

import glob
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from segkit.data.msd import case_id_of
from segkit.engine.checkpoint import load_checkpoint, load_weights
from segkit.errors import DataError, SegkitError
from segkit.inference.predictor import Predictor
from segkit.io.image_io import is_image_file, write_like
from segkit.models import build_model
from segkit.runtime import resolve_device


@dataclass(frozen=True)
class CaseResult:
    """Outcome of one input."""

    case_id: str
    source: Path
    output: Path | None
    status: str  # written | skipped | failed
    seconds: float = 0.0
    message: str = ""


def collect_inputs(items: list[str]) -> list[Path]:
    """Image files from directories, files and glob patterns, in a stable order without repeats."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(item) if Path(m).is_file())
            if not matches:
                raise DataError(f"{item}: no such file or directory, and no file matches it as a pattern")
            found += matches
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise DataError(f"no image files (.nii.gz, .nii, .nrrd, .mha) found in {', '.join(items)}")
    return unique


def output_path_for(source: Path, output_dir: Path) -> Path:
    """The output file for ``source``: same file name, inside ``output_dir``; never an input."""
    target = (output_dir / source.name).resolve()
    if target.parent != output_dir.resolve():
        raise DataError(f"{source}: output name escapes the output directory")
    if target == source.resolve():
        raise DataError(f"{source}: output would overwrite the input; choose an --output outside the input folder")
    return target


def _predict_one(predictor: Predictor, source: Path, output_dir: Path, overwrite: bool) -> CaseResult:
    case_id = case_id_of(source)
    started = time.perf_counter()
    try:
        target = output_path_for(source, output_dir)
        if target.exists() and not overwrite:
            return CaseResult(case_id, source, target, "skipped", message="exists (use --overwrite to redo)")
        write_like(predictor.predict(source), source, target)
    except SegkitError as exc:
        return CaseResult(case_id, source, None, "failed", time.perf_counter() - started, str(exc))
    return CaseResult(case_id, source, target, "written", time.perf_counter() - started)


def run_prediction(checkpoint: Path, inputs: list[str], output_dir: Path, device: str = "auto",
                   overwrite: bool = False, console: Console | None = None) -> list[CaseResult]:
    """Predict every input; bad cases are reported and skipped, the rest finish."""
    console = console or Console()
    sources = collect_inputs(inputs)
    if any(output_dir.resolve() == s.parent for s in sources):
        raise DataError(f"--output {output_dir} is an input folder; write predictions to another folder")
    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt.config.model)
    load_weights(model, ckpt)
    output_dir.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(model, ckpt.config, resolve_device(device))
    console.print(f"predicting {len(sources)} case(s) with {ckpt.path} on {predictor.device}")
    results = [_predict_one(predictor, source, output_dir, overwrite) for source in sources]
    console.print(results_table(results))
    return results


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
        table.add_row(r.case_id, r.status, seconds, detail + (f"  ({r.message})" if r.status == "skipped" else ""))
    return table
