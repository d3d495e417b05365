"""Predict pipeline: checkpoint → model → label maps for every input, written on each input's grid."""

from __future__ import annotations

import glob
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from segkit.data.cases import Case, case_id_of
from segkit.data.nnunet import CHANNEL_FILE
from segkit.engine.checkpoint import load_checkpoint, load_weights
from segkit.errors import DataError, SegkitError
from segkit.inference.predictor import Predictor
from segkit.io.atomic import full_suffix
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


def group_channels(files: list[Path], channels: int) -> list[Case]:
    """One case per file, or for multi-channel models nnU-Net style ``CASE_XXXX`` files grouped per case."""
    if channels == 1:
        return [Case(case_id_of(p), p) for p in files]
    grouped: dict[str, dict[int, Path]] = {}
    for path in files:
        match = CHANNEL_FILE.match(case_id_of(path))
        if match is None:
            raise DataError(f"{path}: the model takes {channels} channels; name inputs CASE_0000, CASE_0001, ...")
        grouped.setdefault(match["case"], {})[int(match["channel"])] = path
    cases = []
    for case_id, by_channel in grouped.items():
        if sorted(by_channel) != list(range(channels)):
            raise DataError(f"case '{case_id}': found channels {sorted(by_channel)}, the model needs 0..{channels - 1}")
        paths = [by_channel[c] for c in range(channels)]
        cases.append(Case(case_id, paths[0], None, tuple(paths[1:])))
    return cases


def output_path_for(case: Case, output_dir: Path) -> Path:
    """The output file for ``case``: its id plus the input's suffix, inside ``output_dir``; never an input."""
    target = (output_dir / f"{case.case_id}{full_suffix(case.image)}").resolve()
    if target.parent != output_dir.resolve():
        raise DataError(f"{case.image}: output name escapes the output directory")
    if target in {p.resolve() for p in case.images}:
        raise DataError(f"{case.image}: output would overwrite the input; choose an --output outside the input folder")
    return target


def _predict_one(predictor: Predictor, case: Case, output_dir: Path, overwrite: bool) -> CaseResult:
    started = time.perf_counter()
    try:
        target = output_path_for(case, output_dir)
        if target.exists() and not overwrite:
            return CaseResult(case.case_id, case.image, target, "skipped", message="exists (use --overwrite to redo)")
        write_like(predictor.predict(case.images), case.image, target)
    except SegkitError as exc:
        return CaseResult(case.case_id, case.image, None, "failed", time.perf_counter() - started, str(exc))
    return CaseResult(case.case_id, case.image, target, "written", time.perf_counter() - started)


def run_prediction(checkpoint: Path, inputs: list[str], output_dir: Path, device: str = "auto",
                   overwrite: bool = False, console: Console | None = None) -> list[CaseResult]:
    """Predict every input; bad cases are reported and skipped, the rest finish."""
    console = console or Console()
    sources = collect_inputs(inputs)
    if any(output_dir.resolve() == s.parent for s in sources):
        raise DataError(f"--output {output_dir} is an input folder; write predictions to another folder")
    ckpt = load_checkpoint(checkpoint)
    cases = group_channels(sources, ckpt.config.model.in_channels)
    model = build_model(ckpt.config.model)
    load_weights(model, ckpt)
    output_dir.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(model, ckpt.config, resolve_device(device))
    console.print(f"predicting {len(cases)} case(s) with {ckpt.path} on {predictor.device}")
    results = [_predict_one(predictor, case, output_dir, overwrite) for case in cases]
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
