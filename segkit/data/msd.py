"""Medical Segmentation Decathlon dataset index (``dataset.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from segkit.errors import DataError
from segkit.io.atomic import full_suffix


@dataclass(frozen=True)
class Case:
    """One case: an id, its image file and (when known) its label file."""

    case_id: str
    image: Path
    label: Path | None = None


def case_id_of(path: Path) -> str:
    """The case id of an image path: its file name without the image suffix."""
    return path.name[: len(path.name) - len(full_suffix(path))]


def _resolve(root: Path, entry: object, where: str) -> Path:
    if not isinstance(entry, str) or not entry:
        raise DataError(f"{root / 'dataset.json'}: {where} must be a relative file path, got {entry!r}")
    path = (root / entry).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DataError(f"{root / 'dataset.json'}: {where} '{entry}' points outside the dataset folder")
    if not path.is_file():
        raise DataError(f"{root / 'dataset.json'}: {where} '{entry}' does not exist; fix the path or add the file")
    return path


def load_msd(root: Path) -> tuple[list[Case], list[Case]]:
    """Training cases (with labels) and test cases (labels from ``labelsTs/`` when present)."""
    manifest_path = root / "dataset.json"
    if not manifest_path.is_file():
        raise DataError(f"{manifest_path}: not found; data.root must hold an MSD dataset.json "
                        "(create demo data with 'segkit data synth --out DIR')")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{manifest_path}: not valid JSON ({exc})") from None
    training = []
    for i, item in enumerate(manifest.get("training", [])):
        if not isinstance(item, dict):
            raise DataError(f"{manifest_path}: training[{i}] must be an object with 'image' and 'label'")
        image = _resolve(root, item.get("image"), f"training[{i}].image")
        label = _resolve(root, item.get("label"), f"training[{i}].label")
        training.append(Case(case_id_of(image), image, label))
    test = []
    for i, item in enumerate(manifest.get("test", [])):
        image = _resolve(root, item.get("image") if isinstance(item, dict) else item, f"test[{i}]")
        label = root / "labelsTs" / image.name
        test.append(Case(case_id_of(image), image, label if label.is_file() else None))
    _check_unique(manifest_path, training + test)
    return training, test


def _check_unique(manifest_path: Path, cases: list[Case]) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.case_id in seen:
            raise DataError(f"{manifest_path}: case id '{case.case_id}' appears twice; case ids must be unique")
        seen.add(case.case_id)


def num_labels(root: Path) -> int | None:
    """Number of classes declared in ``dataset.json`` (including background), if declared."""
    try:
        labels = json.loads((root / "dataset.json").read_text(encoding="utf-8")).get("labels")
    except (OSError, ValueError):
        return None
    return len(labels) if isinstance(labels, dict) else None
