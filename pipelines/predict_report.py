"""What ``segkit predict`` prints at the end: the per-case table and the summary line."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table
from segkit.pipelines.predict_jobs import CaseResult

from segkit.inference.manifest import MANIFEST

STATUSES = ("written", "skipped", "failed")


def summary_line(results: list[CaseResult], output_dir: Path) -> str:
    """``N written, M skipped, K failed`` (and previews not drawn, if any) and where the manifest is."""
    counts = {status: sum(r.status == status for r in results) for status in STATUSES}
    undrawn = sum(bool(r.warning) for r in results)
    previews = f" ({undrawn} without the preview asked for)" if undrawn else ""
    return (f"{counts['written']} written{previews}, {counts['skipped']} skipped, {counts['failed']} failed; "
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
    """Per-case table: status, seconds and the written file (or the reason it failed, or its warning)."""
    table = Table(title="predictions")
    for column in ("case", "status", "seconds"):
        table.add_column(column, no_wrap=True)
    table.add_column("output / message", overflow="fold")
    for r in results:
        detail = _shown_path(r.output) if r.status != "failed" else r.message
        seconds = f"{r.seconds:.2f}" if r.status != "skipped" else "-"
        detail += f"  ({r.message})" if r.status == "skipped" else ""
        detail += f"  (warning: {r.warning})" if r.warning else ""
        table.add_row(escape(r.case_id), r.status, seconds, escape(detail))  # names may hold [brackets]
    return table
