"""Names of classes and channels as a dataset's ``dataset.json`` declares them, in MSD's or nnU-Net v2's style."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATASET_JSON = "dataset.json"


def names_by_index(entries: Any) -> dict[int, str]:
    """Index → name from a ``dataset.json`` mapping: MSD's ``{"1": "liver"}`` (``labels``, ``modality``) or nnU-Net
    v2's ``{"liver": 1}`` (``labels``) and ``{"0": "CT"}`` (``channel_names``); nnU-Net's regions (lists of values)
    name no single index. Anything else gives no names."""
    if not isinstance(entries, dict):
        return {}
    if entries and all(isinstance(v, int | list) and not isinstance(v, bool) for v in entries.values()):
        return {int(v): str(k) for k, v in entries.items() if isinstance(v, int)}
    return {int(k): str(v) for k, v in entries.items() if str(k).isdigit()}


def declared_names(folder: Path, key: str = "labels") -> dict[int, str]:
    """``names_by_index`` of ``key`` in ``folder/dataset.json``; nothing when there is no readable one."""
    try:
        manifest = json.loads((Path(folder) / DATASET_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return names_by_index(manifest.get(key)) if isinstance(manifest, dict) else {}


def class_name_list(names: dict[int, str], num_classes: int) -> list[str] | None:
    """Every class's name, background first (``class K`` where none is declared); None when none is declared."""
    if not names:
        return None
    return [names.get(k, "background" if k == 0 else f"class {k}") for k in range(num_classes)]
