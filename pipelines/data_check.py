"""``segkit data check``: check a dataset's files, print the problems and the fingerprint, write both as JSON.

Orchestration only: the checks live in :mod:`segkit.data.check`, the statistics in :mod:`segkit.data.fingerprint`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segkit.data.cache import default_cache_dir
from segkit.data.cases import Case, DatasetIndex
from segkit.data.check import CheckResult, Problem, check_cases
from segkit.data.fingerprint import Fingerprint, compute_fingerprint
from segkit.data.index import load_dataset
from segkit.errors import DataError
from segkit.io.atomic import atomic_write_text

FINGERPRINT_NAME = "segkit_fingerprint.json"
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow"}


def _manifest(root: Path) -> dict:
    """dataset.json when the layout has one (already validated by the index), else empty."""
    path = root / "dataset.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _names(manifest: dict, key: str) -> dict[int, str]:
    """Index → name from dataset.json: MSD ``modality``/``labels`` ({"0": name}) or nnU-Net ``channel_names``
    ({"0": name}) / ``labels`` ({name: 0})."""
    entries = manifest.get(key)
    if not isinstance(entries, dict):
        return {}
    if all(isinstance(v, int) for v in entries.values()):
        return {int(v): str(k) for k, v in entries.items()}
    return {int(k): str(v) for k, v in entries.items() if str(k).isdigit()}


def _targets(index: DatasetIndex) -> tuple[list[Case], set[str], int | None]:
    """What to check: every case, plus each further channel file (one file per channel) against the label.

    Returns the cases, the ids whose label may be missing (test cases) and the channels per file.
    """
    cases, optional = [], set()
    for case in index.training + index.test:
        entries = [Case(case.case_id, case.image, case.label)]
        entries += [Case(f"{case.case_id} (channel {k})", path, case.label)
                    for k, path in enumerate(case.extra_channels, start=1)]
        cases += entries
        if case in index.test:
            optional |= {entry.case_id for entry in entries}
    one_file_per_channel = any(case.extra_channels for case in index.training + index.test)
    return cases, optional, 1 if one_file_per_channel else index.channels


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


def fingerprint_table(fingerprint: Fingerprint, channel_names: dict[int, str], class_names: dict[int, str]) -> Table:
    """The fingerprint as a rich table (per-axis values in x × y × z order)."""
    table = Table(title=f"Fingerprint of {fingerprint.num_cases} case(s)")
    table.add_column("property")
    table.add_column("value", justify="right")
    table.add_row("spacing median (mm)", _axes(fingerprint.spacing_median, 3))
    table.add_row("spacing 10th–90th percentile (mm)",
                  f"{_axes(fingerprint.spacing_p10, 3)} – {_axes(fingerprint.spacing_p90, 3)}")
    table.add_row("shape min", _axes(fingerprint.shape_min, 0))
    table.add_row("shape median", _axes(fingerprint.shape_median, 1))
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


def _report_json(root: Path, result: CheckResult, fingerprint: Fingerprint | None) -> str:
    return json.dumps({
        "dataset": str(root), "cases_checked": result.cases_checked, "ok": result.ok,
        "problems": [problem.as_dict() for problem in result.problems],
        "fingerprint": fingerprint.as_dict() if fingerprint is not None else None,
    }, indent=2) + "\n"


def _write(path: Path, text: str) -> None:
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise DataError(f"{path}: cannot write the fingerprint ({exc.strerror}); pass --json OUT to write it "
                        "elsewhere") from None


def check_dataset(root: Path, layout: str = "msd", index: DatasetIndex | None = None,
                  ) -> tuple[CheckResult, Fingerprint | None]:
    """Check every training and test case of the dataset at ``root`` (cached by file size and mtime).

    Test cases without a label file are checked for the image only. The fingerprint covers the cases
    without errors; with one file per channel, its intensities describe the first channel.
    """
    index = index or load_dataset(root, layout)
    cases, optional, channels = _targets(index)
    cache = default_cache_dir() / "checks" / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]}.json"
    with contextlib.suppress(OSError):  # no writable cache folder: the check still runs, only uncached
        cache.parent.mkdir(parents=True, exist_ok=True)
    result = check_cases(cases, index.num_classes, channels, cache, optional_labels=optional)
    case_ids = {case.case_id for case in index.training + index.test}
    result = dataclasses.replace(result, cases_checked=len(case_ids))  # cases, not channel files
    stats = [s for s in result.stats if s.case_id in case_ids]
    return result, compute_fingerprint(stats, index.num_classes) if stats else None


def run_data_check(root: Path, layout: str = "msd", json_out: Path | None = None,
                   console: Console | None = None) -> CheckResult:
    """Check the dataset at ``root``; print the problems and the fingerprint and write both as JSON
    to ``json_out`` (default ``ROOT/segkit_fingerprint.json``)."""
    console = console or Console()
    result, fingerprint = check_dataset(root, layout)
    manifest = _manifest(root)
    if result.problems:
        console.print(problem_table(result.problems, root))
    console.print(_summary(result))
    if fingerprint is not None:
        channels = _names(manifest, "modality") or _names(manifest, "channel_names")
        console.print(fingerprint_table(fingerprint, channels, _names(manifest, "labels")))
    else:
        console.print("[bold red]no case is free of errors, so there is no fingerprint[/]")
    json_out = json_out or root / FINGERPRINT_NAME
    _write(json_out, _report_json(root, result, fingerprint))
    console.print(escape(f"report written to {json_out}"))
    return result
