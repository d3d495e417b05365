"""Where ``segkit evaluate`` writes its CSV and markdown summary, and what happens to an earlier run's copies.

Both files are written atomically once every case is scored, replacing only copies an earlier run wrote: a file
at those paths whose first line is not the one ``segkit evaluate`` writes there (the CSV header, the summary's
title) is the user's, and the run is refused before anything is scored. When a run fails, the copies an earlier
run left at the same paths are removed, so that nobody reads them as this run's results.
"""

from __future__ import annotations

from pathlib import Path

from segkit.errors import DataError
from segkit.io.atomic import atomic_write_text

CSV_FIRST_LINE = "case,class,dice,hd95_mm,nsd"
SUMMARY_FIRST_LINE = "# Segmentation evaluation"


def check_report_path(path: Path) -> None:
    """Refuse a folder, or a file ``segkit evaluate`` did not write, as ``--csv`` / ``--summary`` before anything
    is scored."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder — give --csv / --summary a file path")
    if path.exists() and not _written_by_evaluate(path):
        raise DataError(f"{path}: exists and was not written by segkit evaluate, which never replaces it — give "
                        f"--csv / --summary another path, or move the file")


def write_report(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (creating its folder); one-line DataError when that fails, after
    removing an earlier run's copy that would otherwise be left looking current."""
    check_report_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as exc:
        removed = remove_stale([path])
        note = f"; removed the earlier run's {removed[0]}" if removed else ""
        reason = exc.strerror or exc
        raise DataError(f"{path}: cannot write the report ({reason}){note} — choose another path") from None


def _written_by_evaluate(path: Path) -> bool:
    """Whether ``path`` is a file whose first line is one ``segkit evaluate`` writes."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline().rstrip("\r\n")
    except OSError:
        return False
    return first in (CSV_FIRST_LINE, SUMMARY_FIRST_LINE)


def remove_stale(paths: list[Path]) -> list[Path]:
    """Remove the files among ``paths`` that an earlier ``segkit evaluate`` wrote; the ones removed."""
    removed = []
    for path in paths:
        if path.is_file() and _written_by_evaluate(path):
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed
