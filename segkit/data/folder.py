"""Plain folder layout: ``images/`` and ``labels/`` matched by case name, or a CSV list.

Held-out (test) cases are the images in ``imagesTs/``, with the label of the same case id in ``labelsTs/`` where
there is one (the references that ``segkit compare`` scores against), as in the MSD and nnU-Net layouts.

The CSV (``dataset.csv`` in the root) has a ``label`` column and one ``image`` column, or
``image_0``, ``image_1``, … for several channels; an optional ``case_id`` column names the
cases (default: the first image's file name). Paths are relative to the root. An optional ``split``
column marks test cases (``test``; ``train`` or empty for training cases), whose ``label`` may be empty;
with a CSV, ``imagesTs/`` is not read (the CSV lists every case).
"""

from __future__ import annotations

import csv
from pathlib import Path

from segkit.data.cases import Case, DatasetIndex, case_id_of, check_unique, inside
from segkit.errors import DataError
from segkit.io.image_io import is_image_file

CSV_NAME = "dataset.csv"


def _label_files(folder: Path) -> dict[str, Path]:
    """Case id → label file in ``folder`` (none when it is missing)."""
    return {case_id_of(p): p for p in sorted(folder.iterdir()) if is_image_file(p)} if folder.is_dir() else {}


def _paired(images: Path, labels: Path, labelled: bool) -> list[Case]:
    """The image files in ``images`` with the label of the same case id in ``labels``; every image needs one when
    ``labelled`` (training cases), else a missing label is None (held-out cases without a reference)."""
    label_files = _label_files(labels)
    cases = []
    for image in sorted(p for p in images.iterdir() if is_image_file(p)):
        label = label_files.get(case_id_of(image))
        if label is None and labelled:
            raise DataError(f"{image}: no label named {case_id_of(image)}.* in {labels}; add it or move the image")
        cases.append(Case(case_id_of(image), image, label))
    return cases


def _from_folders(root: Path) -> list[Case]:
    images, labels = root / "images", root / "labels"
    if not images.is_dir():
        raise DataError(f"{root}: needs images/ and labels/ folders (or a {CSV_NAME}); see docs/FORMATS.md")
    return _paired(images, labels, labelled=True)


def _held_out(root: Path) -> list[Case]:
    """The held-out cases: the images in ``imagesTs/`` (none without it), each with the label of its case id in
    ``labelsTs/`` where there is one (as MSD and nnU-Net datasets hold theirs)."""
    folder = root / "imagesTs"
    return _paired(folder, root / "labelsTs", labelled=False) if folder.is_dir() else []


def _image_columns(header: list[str], source: Path) -> list[str]:
    numbered = sorted((c for c in header if c.startswith("image_") and c[6:].isdigit()), key=lambda c: int(c[6:]))
    columns = ["image"] if "image" in header else numbered
    if not columns or "label" not in header:
        raise DataError(f"{source}: needs columns 'image' (or image_0, image_1, ...) and 'label'")
    return columns


def _split_of(row: dict, source: Path, where: str) -> str:
    split = (row.get("split") or "train").strip().lower()
    if split not in ("train", "test"):
        raise DataError(f"{source}: {where} split is {row.get('split')!r}; write train (or leave it empty) or test")
    return split


def _from_csv(root: Path, source: Path) -> tuple[list[Case], list[Case]]:
    """The training and the test rows (``split`` column ``test``; their label may be empty)."""
    with source.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = _image_columns(list(reader.fieldnames or []), source)
        cases: dict[str, list[Case]] = {"train": [], "test": []}
        for row_number, row in enumerate(reader, start=2):
            where = f"line {row_number}"
            split = _split_of(row, source, where)
            images = [inside(root, row.get(c), source, f"{where} {c}") for c in columns]
            given = row.get("label")
            label = inside(root, given, source, f"{where} label") if split == "train" or given else None
            cases[split].append(Case(row.get("case_id") or case_id_of(images[0]), images[0], label,
                                     tuple(images[1:])))
    return cases["train"], cases["test"]


def index_folder(root: Path) -> DatasetIndex:
    """Cases from ``dataset.csv`` when present (test cases: rows whose ``split`` is ``test``), else ``images/`` +
    ``labels/`` with the test cases in ``imagesTs/`` (+ ``labelsTs/``)."""
    source = root / CSV_NAME
    cases, test = _from_csv(root, source) if source.is_file() else (_from_folders(root), _held_out(root))
    if not cases and source.is_file():
        raise DataError(f"{source}: no training cases: no rows below the header; add one line per case")
    if not cases:
        raise DataError(f"{root / 'images'}: no training cases: no image files; add cases to images/ and labels/")
    check_unique(source if source.is_file() else root / "images", cases)
    check_unique(source if source.is_file() else root / "imagesTs", cases + test)
    return DatasetIndex(cases, test, None, len(cases[0].images))
