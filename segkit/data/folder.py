"""Plain folder layout: ``images/`` and ``labels/`` matched by case name, or a CSV list.

The CSV (``dataset.csv`` in the root) has a ``label`` column and one ``image`` column, or
``image_0``, ``image_1``, … for several channels; an optional ``case_id`` column names the
cases (default: the first image's file name). Paths are relative to the root.
"""

from __future__ import annotations

import csv
from pathlib import Path

from segkit.data.cases import Case, DatasetIndex, case_id_of, check_unique, inside
from segkit.errors import DataError
from segkit.io.image_io import is_image_file

CSV_NAME = "dataset.csv"


def _from_folders(root: Path) -> list[Case]:
    images, labels = root / "images", root / "labels"
    if not images.is_dir():
        raise DataError(f"{root}: needs images/ and labels/ folders (or a {CSV_NAME}); see docs/FORMATS.md")
    label_files = {case_id_of(p): p for p in sorted(labels.iterdir()) if is_image_file(p)} if labels.is_dir() else {}
    cases = []
    for image in sorted(p for p in images.iterdir() if is_image_file(p)):
        label = label_files.get(case_id_of(image))
        if label is None:
            raise DataError(f"{image}: no label named {case_id_of(image)}.* in {labels}; add it or move the image")
        cases.append(Case(case_id_of(image), image, label))
    return cases


def _image_columns(header: list[str], source: Path) -> list[str]:
    numbered = sorted((c for c in header if c.startswith("image_") and c[6:].isdigit()), key=lambda c: int(c[6:]))
    columns = ["image"] if "image" in header else numbered
    if not columns or "label" not in header:
        raise DataError(f"{source}: needs columns 'image' (or image_0, image_1, ...) and 'label'")
    return columns


def _from_csv(root: Path, source: Path) -> list[Case]:
    with source.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = _image_columns(list(reader.fieldnames or []), source)
        cases = []
        for row_number, row in enumerate(reader, start=2):
            where = f"line {row_number}"
            images = [inside(root, row.get(c), source, f"{where} {c}") for c in columns]
            label = inside(root, row.get("label"), source, f"{where} label")
            cases.append(Case(row.get("case_id") or case_id_of(images[0]), images[0], label, tuple(images[1:])))
    return cases


def index_folder(root: Path) -> DatasetIndex:
    """Cases from ``dataset.csv`` when present, else ``images/`` + ``labels/``; no separate test set."""
    source = root / CSV_NAME
    cases = _from_csv(root, source) if source.is_file() else _from_folders(root)
    if not cases and source.is_file():
        raise DataError(f"{source}: no training cases: no rows below the header; add one line per case")
    if not cases:
        raise DataError(f"{root / 'images'}: no training cases: no image files; add cases to images/ and labels/")
    check_unique(source if source.is_file() else root / "images", cases)
    return DatasetIndex(cases, [], None, len(cases[0].images))
