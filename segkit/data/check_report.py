"""Where ``segkit data check`` writes its JSON report by default, and how a report it wrote is recognised (so that
it replaces only its own reports, and ``data synth --overwrite`` removes a report of the cases it replaces)."""

from __future__ import annotations

import json
from pathlib import Path

FINGERPRINT_NAME = "segkit_fingerprint.json"
REPORT_KEYS = ("dataset", "image_dims", "cases_checked", "ok", "problems")  # how a report data check wrote begins


def written_by_check(path: Path) -> bool:
    """Whether ``path`` holds a report ``segkit data check`` wrote (a JSON object whose keys begin as ours)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(report, dict) and tuple(report)[: len(REPORT_KEYS)] == REPORT_KEYS
