"""The results of a dataset check (problems, per-case reports) and their cache: a JSON file of per-case results
keyed by each file's path, size and modification time, so an unchanged dataset is not read again."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from segkit.data.cases import Case
from segkit.data.fingerprint import CaseStats
from segkit.io.atomic import atomic_write_text

# 2: NIfTI headers whose qform and sform disagree are refused; 3: a multi-channel case is one entry (its channel
# files compared with the first, statistics of every channel), 2D cases, the label bound says who declares it;
# 4: spacing and shape statistics in the reoriented x, y, z order (were the file's array-axis order); 5: an sform
# whose voxel size is not pixdim and a gzip-compressed NIfTI named .nii are refused
CACHE_VERSION = 5

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file; ``message`` reads ``what is wrong — what to do``."""

    case_id: str
    file: Path
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.file}: {self.message}"

    def as_dict(self) -> dict:
        """Plain JSON-ready values."""
        return {"case_id": self.case_id, "file": str(self.file), "severity": self.severity, "message": self.message}

    @classmethod
    def from_dict(cls, data: dict) -> Problem:
        """Inverse of :meth:`as_dict`."""
        return cls(str(data["case_id"]), Path(data["file"]), data["severity"], str(data["message"]))


@dataclass(frozen=True)
class CheckResult:
    """All problems found, how many cases were checked and the statistics of the error-free cases."""

    problems: list[Problem]
    cases_checked: int
    stats: list[CaseStats]

    @property
    def ok(self) -> bool:
        """True when no problem is an error (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        """The problems of severity ``error``."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """The problems of severity ``warning``."""
        return [p for p in self.problems if p.severity == "warning"]


@dataclass(frozen=True)
class CaseReport:
    """One case's problems and, when it had no error, its statistics."""

    problems: list[Problem]
    stats: CaseStats | None


def _file_key(path: Path | None) -> list | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path), stat.st_size, stat.st_mtime_ns]


def case_signature(case: Case, bound: dict | None, channels: int | None, label_optional: bool,
                   image_dims: int = 3) -> dict:
    """Everything a case's result depends on; a cached result is reused only when this is unchanged."""
    return {"case_id": case.case_id, "image": _file_key(case.image),
            "channel_files": [_file_key(path) for path in case.extra_channels], "label": _file_key(case.label),
            "label_bound": bound, "channels": channels, "label_optional": label_optional, "image_dims": image_dims}


def load_cache(path: Path) -> dict[str, dict]:
    """The cached entries in ``path`` (none when missing, unreadable or of another version)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return dict(data["entries"]) if data.get("version") == CACHE_VERSION else {}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return {}  # no cache, or one from another version: check everything again


def cached_report(entry: dict | None, signature: dict) -> CaseReport | None:
    """The report stored in ``entry`` if it was made for ``signature``, else None."""
    if not isinstance(entry, dict) or entry.get("signature") != signature:
        return None
    try:
        stats = CaseStats.from_dict(entry["stats"]) if entry["stats"] is not None else None
        return CaseReport([Problem.from_dict(p) for p in entry["problems"]], stats)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def cache_entry(signature: dict, report: CaseReport) -> dict:
    """``report`` as a JSON-ready cache entry for ``signature``."""
    return {"signature": signature, "problems": [p.as_dict() for p in report.problems],
            "stats": report.stats.as_dict() if report.stats is not None else None}


def save_cache(path: Path, entries: dict[str, dict]) -> None:
    """Write ``entries`` atomically; a folder that cannot be written only loses the time saving."""
    with contextlib.suppress(OSError):  # the cache only saves time; a read-only dataset folder is still checked
        atomic_write_text(path, json.dumps({"version": CACHE_VERSION, "entries": entries}, separators=(",", ":")))
