"""``manifest.jsonl`` in a prediction output folder: one line per case and attempt, so a rerun knows
what is complete.

Before a case's output is written, a ``started`` line is appended; after the atomic rename, a
``written`` line (with seconds per stage and label volumes in ml) or a ``failed`` line with the
reason. A case counts as done when its last line is ``written``, its output file exists as written (size,
modification time), the side files this run asks for exist, and the inputs (size, modification time)
and prediction settings are unchanged. A ``started`` line without
an end means the process died while writing; the case is redone. At the end of a run the manifest
is rewritten compactly (the last line per case) with an atomic replace.

In a sharded run (torchrun) each rank appends to its own ``manifest.rank<N>.jsonl``; rank 0 merges
the parts into ``manifest.jsonl`` at the end (parts left by a killed run are merged by the next).

Every line starts with ``{"case_id": ``. A manifest path that is a link, a folder, or a file with other lines
is not segkit's: the run is refused rather than writing through or over it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segkit.errors import DataError
from segkit.io.atomic import atomic_write_text
from segkit.io.strict_json import json_safe

MANIFEST = "manifest.jsonl"
PART_GLOB = "manifest.rank*.jsonl"
LINE_START = '{"case_id": '  # how every line segkit writes begins (a line cut by a kill: a prefix of it)


def _line(record: dict[str, Any]) -> str:
    """One manifest line, ``case_id`` first."""
    return json.dumps(json_safe({"case_id": record["case_id"], **record}), allow_nan=False) + "\n"


def check_manifest_files(output_dir: Path) -> None:
    """Refuse to predict into ``output_dir`` when a manifest path there is not segkit's: a symbolic link (appends
    would land wherever it points), a folder, or a file with lines segkit does not write (the user's own
    ``manifest.jsonl``, which the run would rewrite)."""
    fix = "move it away or choose another --output"
    for path in [output_dir / MANIFEST, *sorted(output_dir.glob(PART_GLOB))]:
        if path.is_symlink():
            raise DataError(f"{path}: a symbolic link where segkit keeps its prediction manifest; it never writes "
                            f"through a link — {fix}")
        if not path.exists():
            continue
        if not path.is_file():
            raise DataError(f"{path}: not a file, but segkit keeps its prediction manifest under this name — {fix}")
        foreign = _first_foreign_line(path)
        if foreign is not None:
            raise DataError(f"{path}: not a segkit prediction manifest (line {foreign} is not one of its records), "
                            f"and the run would rewrite it — {fix}")


def _first_foreign_line(path: Path) -> int | None:
    """The number of the first line segkit did not write, or None."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return 1
    for number, line in enumerate(text.splitlines(), start=1):
        if line and not (line.startswith(LINE_START) or LINE_START.startswith(line)):
            return number
    return None


def file_signature(paths: Sequence[Path]) -> list[list[int]]:
    """Size and modification time of each file: a changed input (or written output) invalidates the case."""
    return [[Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for p in paths]


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """The last record per case id (unparseable lines, e.g. one cut by a kill, are ignored)."""
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    _read_lines(path, records)
    return records


def read_all(output_dir: Path) -> dict[str, dict[str, Any]]:
    """The last record per case over ``manifest.jsonl`` and any per-rank parts (parts are newer)."""
    records = read_manifest(output_dir / MANIFEST)
    for part in sorted(output_dir.glob(PART_GLOB)):
        _read_lines(part, records)
    return records


def _read_lines(path: Path, records: dict[str, dict[str, Any]]) -> None:
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "case_id" in record:
            records[str(record["case_id"])] = record


def _ends_mid_line(path: Path) -> bool:
    """Whether ``path`` ends without a newline (a process was killed while appending its last line)."""
    try:
        with path.open("rb") as handle:
            if handle.seek(0, os.SEEK_END) == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except FileNotFoundError:
        return False


class Manifest:
    """Append-only record of a prediction run (thread-safe appends, each line flushed and fsynced)."""

    def __init__(self, output_dir: Path, part: int | None = None) -> None:
        self.output_dir = output_dir
        self.path = output_dir / (MANIFEST if part is None else f"manifest.rank{part}.jsonl")
        self.previous = read_all(output_dir)
        self._lock = threading.Lock()
        self._cut = _ends_mid_line(self.path)  # a killed run's last line: ours must not be glued onto it

    def is_done(self, case_id: str, output: Path, signature: list[list[int]], settings: dict[str, Any],
                side_files: Sequence[Path] = ()) -> bool:
        """Whether an earlier run completed this case with the same inputs and settings, its output is as that run
        wrote it (manifests written before outputs were signed count on its existence alone) and the
        ``side_files`` this run asks for (probabilities, preview) exist."""
        record = self.previous.get(case_id)
        if record is None or record.get("status") != "written" or not output.is_file():
            return False
        written = record.get("output_signature")
        return (record.get("output") == str(output) and record.get("input_signature") == signature
                and record.get("settings") == json_safe(settings)
                and (written is None or written == file_signature([output])[0])
                and all(path.is_file() for path in side_files))

    def was_ours(self, case_id: str, output: Path) -> bool:
        """Whether ``output`` was written (or being written) by an earlier segkit run in this folder."""
        record = self.previous.get(case_id)
        return record is not None and record.get("output") == str(output)

    def append(self, record: dict[str, Any]) -> None:
        """Add one line."""
        line = _line(record)
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as handle:
                handle.write("\n" + line if self._cut else line)
                handle.flush()
                os.fsync(handle.fileno())
                self._cut = False
        except OSError as exc:
            raise DataError(f"{self.path}: cannot append to the prediction manifest ({exc.strerror or exc}) — free "
                            "disk space or fix the permissions of the output folder, then run again") from None

    def compact(self) -> None:
        """Merge every part into ``manifest.jsonl`` with only the last line per case (atomic), drop the parts."""
        with self._lock:
            merge_manifests(self.output_dir)


def merge_manifests(output_dir: Path) -> dict[str, dict[str, Any]]:
    """Rewrite ``manifest.jsonl`` from itself and the per-rank parts (last line per case), then delete the parts."""
    records = read_all(output_dir)
    text = "".join(_line(r) for r in records.values())
    try:
        atomic_write_text(output_dir / MANIFEST, text)
    except OSError:  # e.g. a full disk: the appended lines (and parts) stay valid, only the compaction is lost
        return records
    for part in output_dir.glob(PART_GLOB):
        part.unlink(missing_ok=True)
    return records
