"""Medical Segmentation Decathlon layout: ``dataset.json`` with ``training`` and ``test`` lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segkit.data.cases import Case, DatasetIndex, case_id_of, check_unique, inside
from segkit.errors import DataError

MANIFEST = "dataset.json"


def read_manifest(root: Path, hint: str) -> dict[str, Any]:
    """``root/dataset.json`` as a dict, or a one-line DataError saying what to do."""
    path = root / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: not found; {hint}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:  # e.g. 200000 nested brackets: json gives up before it finds an error
        raise DataError(f"{path}: not valid JSON (nested too deeply to read); fix or recreate the file") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path}: must hold a JSON object")
    return manifest


def load_msd(root: Path) -> tuple[list[Case], list[Case]]:
    """Training cases (with labels) and test cases (labels from ``labelsTs/`` when present)."""
    index = index_msd(root)
    return index.training, index.test


def index_msd(root: Path) -> DatasetIndex:
    """The MSD dataset at ``root``; 4D multi-modal images count as ``len(modality)`` channels."""
    manifest = read_manifest(root, "data.root must hold an MSD dataset.json "
                                   "(create demo data with 'segkit data synth --out DIR')")
    source = root / MANIFEST
    training = []
    for i, item in enumerate(manifest.get("training", [])):
        if not isinstance(item, dict):
            raise DataError(f"{source}: training[{i}] must be an object with 'image' and 'label'")
        image = inside(root, item.get("image"), source, f"training[{i}].image")
        label = inside(root, item.get("label"), source, f"training[{i}].label")
        training.append(Case(case_id_of(image), image, label))
    if not training:
        raise DataError(f"{source}: no training cases: 'training' lists none; add cases to imagesTr/labelsTr and list "
                        "them under 'training'")
    test = []
    for i, item in enumerate(manifest.get("test", [])):
        image = inside(root, item.get("image") if isinstance(item, dict) else item, source, f"test[{i}]")
        label = root / "labelsTs" / image.name
        test.append(Case(case_id_of(image), image, label if label.is_file() else None))
    check_unique(source, training + test)
    labels, modality = manifest.get("labels"), manifest.get("modality")
    return DatasetIndex(training, test, len(labels) if isinstance(labels, dict) else None,
                        len(modality) if isinstance(modality, dict) else None)
