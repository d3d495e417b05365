"""``segkit data check``: check a dataset's files, print the problems and the fingerprint, write both as JSON.

Orchestration only: the checks live in :mod:`segkit.data.check`, the statistics in :mod:`segkit.data.fingerprint`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segkit.data.cache import default_cache_dir
from segkit.data.cases import Case, DatasetIndex
from segkit.data.check import CheckResult, LabelBound, Problem, check_cases
from segkit.data.check_2d import image_channels, planar_files
from segkit.data.check_report import FINGERPRINT_NAME, written_by_check
from segkit.data.fingerprint import Fingerprint, compute_fingerprint
from segkit.data.index import load_dataset
from segkit.data.label_names import names_by_index
from segkit.errors import DataError
from segkit.io.atomic import atomic_write_text

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow"}


def _manifest(root: Path) -> dict:
    """dataset.json when the layout has one (already validated by the index), else empty."""
    path = root / "dataset.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _shown_path(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def problem_table(problems: list[Problem], root: Path) -> Table:
    """The problems as a rich table, file paths relative to the dataset folder."""
    table = Table(title=escape(f"Problems in {root}"))
    for column in ("case", "file", "severity", "message"):
        table.add_column(column, overflow="fold")
    for problem in problems:
        severity = f"[{_SEVERITY_STYLE[problem.severity]}]{problem.severity}[/]"
        table.add_row(escape(problem.case_id), escape(_shown_path(problem.file, root)), severity,
                      escape(problem.message))
    return table


def _axes(values: list[float], digits: int) -> str:
    return " × ".join(f"{v:.{digits}f}" for v in values)


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fingerprint_table(fingerprint: Fingerprint, channel_names: dict[int, str], class_names: dict[int, str],
                      title: str | None = None) -> Table:
    """The fingerprint as a rich table (per-axis values in x × y × z order)."""
    table = Table(title=title or f"Fingerprint of {fingerprint.num_cases} case(s)")
    table.add_column("property")
    table.add_column("value", justify="right")
    table.add_row("spacing median (mm)", _axes(fingerprint.spacing_median, 3))
    table.add_row("spacing 10th–90th percentile (mm)",
                  f"{_axes(fingerprint.spacing_p10, 3)} – {_axes(fingerprint.spacing_p90, 3)}")
    table.add_row("shape min", _axes(fingerprint.shape_min, 0))
    table.add_row("shape median", " × ".join(f"{v:g}" for v in fingerprint.shape_median))  # 64, or 64.5 between two
    table.add_row("shape max", _axes(fingerprint.shape_max, 0), end_section=True)
    for stats in fingerprint.intensity:
        name = escape(channel_names.get(stats.channel, f"channel {stats.channel}"))
        table.add_row(f"{name} foreground 0.5 / 50 / 99.5 %",
                      f"{_optional(stats.p0_5)} / {_optional(stats.median)} / {_optional(stats.p99_5)}")
        table.add_row(f"{name} foreground mean ± std", f"{_optional(stats.mean)} ± {_optional(stats.std)}")
    table.add_section()
    for value, frequency in fingerprint.class_frequency.items():
        table.add_row(f"class {value} ({escape(class_names.get(value, '?'))}) voxel fraction", f"{frequency:.5f}")
    return table


def _summary(result: CheckResult) -> str:
    if not result.problems:
        return f"[green]all {result.cases_checked} case(s) passed[/]"
    verdict = "[green]passed[/] (warnings only)" if result.ok else "[bold red]failed[/]"
    return (f"{result.cases_checked} case(s) checked: {len(result.errors)} error(s), "
            f"{len(result.warnings)} warning(s) — {verdict}")


def _report_json(root: Path, result: CheckResult, fingerprints: Fingerprints, image_dims: int) -> str:
    return json.dumps({
        "dataset": str(root), "image_dims": image_dims, "cases_checked": result.cases_checked, "ok": result.ok,
        "problems": [problem.as_dict() for problem in result.problems],
        "fingerprint": _as_dict(fingerprints.training),  # the training cases: what training derives settings from
        "test_fingerprint": _as_dict(fingerprints.test),  # the held-out test cases, for information only
    }, indent=2) + "\n"


def _as_dict(fingerprint: Fingerprint | None) -> dict | None:
    return fingerprint.as_dict() if fingerprint is not None else None




def check_report_path(path: Path) -> None:
    """Refuse, before anything is checked, a folder or a file this command did not write as the report's path:
    only an earlier report is replaced (``--json dataset.json`` would otherwise replace the dataset's own file)."""
    if path.is_dir():
        raise DataError(f"--json {path}: is a folder — give a file path for the report")
    if path.exists() and not written_by_check(path):
        raise DataError(f"{path}: exists and is not a report segkit data check wrote, which it never "
                        "replaces — give --json another path, or move the file")


def _write(path: Path, text: str) -> None:
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise DataError(f"{path}: cannot write the fingerprint ({exc.strerror}); pass --json OUT to write it "
                        "elsewhere") from None


@dataclass(frozen=True)
class Fingerprints:
    """The fingerprint of the error-free training cases (it drives ``data.spacing: auto`` and
    ``data.normalize: ct``, as in nnU-Net) and, kept apart for information, that of the test cases."""

    training: Fingerprint | None
    test: Fingerprint | None


def _label_bound(index: DatasetIndex, model_classes: int | None) -> LabelBound | None:
    if index.num_classes is not None:
        return LabelBound.from_manifest(index.num_classes)
    return LabelBound.from_model(model_classes) if model_classes is not None else None


def _cache_path(root: Path) -> Path:
    cache = default_cache_dir() / "checks" / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]}.json"
    with contextlib.suppress(OSError):  # no writable cache folder: the check still runs, only uncached
        cache.parent.mkdir(parents=True, exist_ok=True)
    return cache


def fingerprints(result: CheckResult, index: DatasetIndex, num_classes: int | None = None) -> Fingerprints:
    """The training and the test cases' fingerprints from ``result``'s per-case statistics (None where no case of
    that group is free of errors)."""
    by_id = {stats.case_id: stats for stats in result.stats}

    def of(cases: list[Case]) -> Fingerprint | None:
        stats = [by_id[case.case_id] for case in cases if case.case_id in by_id]
        return compute_fingerprint(stats, index.num_classes or num_classes) if stats else None

    return Fingerprints(of(index.training), of(index.test))


def check_dataset(root: Path, layout: str = "msd", index: DatasetIndex | None = None, *,
                  model_classes: int | None = None, image_dims: int | None = None,
                  ) -> tuple[CheckResult, Fingerprint | None]:
    """Check every training and test case of the dataset at ``root`` (cached by file size and mtime); return the
    result and the fingerprint of the error-free training cases (test cases never shape training settings).

    Test cases without a label file are checked for the image only. ``model_classes`` bounds the label values
    where the dataset declares no label set (the folder layout); ``image_dims`` 2 checks 2D image files
    (default: 2 when every image is a PNG or TIFF file, else 3).
    """
    index = index or load_dataset(root, layout)
    result = _check(root, index, model_classes, _dims_of(index, image_dims))
    return result, fingerprints(result, index, model_classes).training


def _dims_of(index: DatasetIndex, image_dims: int | None) -> int:
    """``image_dims``, or 2 when every image is a PNG or TIFF file, else 3."""
    return image_dims or (2 if planar_files(index.training + index.test) else 3)


def _check(root: Path, index: DatasetIndex, model_classes: int | None, dims: int) -> CheckResult:
    result = check_cases(index.training + index.test, _label_bound(index, model_classes), image_channels(index, dims),
                         _cache_path(root), optional_labels={case.case_id for case in index.test}, image_dims=dims)
    skipped = [Problem(case_id, path, "error", message) for case_id, path, message in index.skipped]
    return dataclasses.replace(result, problems=skipped + result.problems) if skipped else result


def _print_fingerprints(console: Console, found: Fingerprints, manifest: dict) -> None:
    channels = names_by_index(manifest.get("modality")) or names_by_index(manifest.get("channel_names"))
    classes = names_by_index(manifest.get("labels"))
    if found.training is None:
        console.print("[bold red]no training case is free of errors, so there is no fingerprint[/]")
    else:
        console.print(fingerprint_table(found.training, channels, classes,
                                        f"Fingerprint of {found.training.num_cases} training case(s)"))
    if found.test is not None:
        console.print(fingerprint_table(found.test, channels, classes, f"Held-out test cases ({found.test.num_cases})"
                                        " — for information only; training settings use the training cases"))


def run_data_check(root: Path, layout: str = "msd", json_out: Path | None = None,
                   console: Console | None = None, image_dims: int | None = None) -> CheckResult:
    """Check the dataset at ``root``; print the problems and the fingerprints and write them as JSON
    to ``json_out`` (default ``ROOT/segkit_fingerprint.json``). ``image_dims`` as in :func:`check_dataset`."""
    console = console or Console()
    json_out = json_out or root / FINGERPRINT_NAME
    check_report_path(json_out)
    index = load_dataset(root, layout, given_as="")
    dims = _dims_of(index, image_dims)
    result = _check(root, index, None, dims)
    if result.problems:
        console.print(problem_table(result.problems, root))
    if dims == 2:
        console.print("checked as 2D image files (data.image_dims: 2)")
    console.print(_summary(result))
    found = fingerprints(result, index)
    _print_fingerprints(console, found, _manifest(root))
    _write(json_out, _report_json(root, result, found, dims))
    console.print(escape(f"report written to {json_out}"))
    return result
