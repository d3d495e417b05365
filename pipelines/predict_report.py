"""What ``segkit predict`` prints: a line per finished case, then the per-case table and the summary line."""

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


def progress_line(result: CaseResult, stages: dict[str, float], done: int, total: int) -> str:
    """One line as each case finishes (``[2/40] case written in 64.6 s: read 3.3, compute 44.7, write 16.6``, or
    why it failed), so that a long batch is never silent until its closing table."""
    timing = ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in stages.items())
    head = f"[{done}/{total}] {result.case_id} {result.status} in {result.seconds:.1f} s"
    if result.status == "failed":
        return f"{head}: {result.message}"
    return f"{head}: {timing}" + (f" (warning: {result.warning})" if result.warning else "")


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
