"""Evaluate pipeline: Dice per case and class between a prediction folder and a reference folder."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from segkit.data.cases import case_id_of
from segkit.engine.metrics import dice_per_class, mean_foreground
from segkit.errors import DataError
from segkit.io.atomic import atomic_write_text
from segkit.io.image_io import is_image_file, read_label_array

AFFINE_TOLERANCE = 1e-3  # mm; predictions must lie on the reference grid


@dataclass(frozen=True)
class Evaluation:
    """Dice per case (rows) and foreground class (columns), plus problems found."""

    case_ids: list[str]
    class_names: list[str]
    dice: np.ndarray
    problems: list[str]

    @property
    def mean(self) -> float:
        """Mean foreground Dice over cases and classes (NaN entries ignored)."""
        return mean_foreground(self.dice) if len(self.case_ids) else float("nan")


def _images_by_case(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory")
    return {case_id_of(p): p for p in sorted(folder.iterdir()) if p.is_file() and is_image_file(p)}


def _class_names(ref_dir: Path, num_classes: int) -> list[str]:
    manifest = ref_dir.parent / "dataset.json"
    try:
        labels = json.loads(manifest.read_text(encoding="utf-8")).get("labels", {})
    except (OSError, ValueError, AttributeError):
        labels = {}
    return [str(labels.get(str(k), f"class {k}")) for k in range(1, num_classes)]


def evaluate_folders(pred_dir: Path, ref_dir: Path, num_classes: int | None = None) -> Evaluation:
    """Dice of every prediction that has a reference with the same case id."""
    preds, refs = _images_by_case(pred_dir), _images_by_case(ref_dir)
    problems = [f"{refs[c]}: no prediction for this case" for c in refs if c not in preds]
    pairs = []
    for case_id in sorted(set(preds) & set(refs)):
        pred, pred_affine = read_label_array(preds[case_id])
        ref, ref_affine = read_label_array(refs[case_id])
        if pred.shape != ref.shape or not np.allclose(pred_affine, ref_affine, atol=AFFINE_TOLERANCE):
            problems.append(f"{preds[case_id]}: grid {pred.shape} differs from reference {ref.shape} or its affine")
            continue
        pairs.append((case_id, pred, ref))
    if not pairs:
        raise DataError(f"no prediction in {pred_dir} matches a reference in {ref_dir} by case id")
    classes = num_classes or int(max(max(p.max(), r.max()) for _, p, r in pairs)) + 1
    dice = np.stack([dice_per_class(p, r, max(classes, 2)) for _, p, r in pairs])
    return Evaluation([c for c, _, _ in pairs], _class_names(ref_dir, max(classes, 2)), dice, problems)


def evaluation_csv(result: Evaluation) -> str:
    """CSV text: one row per case, one column per class, and the case mean."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["case", *result.class_names, "mean"])
    for case_id, row in zip(result.case_ids, result.dice, strict=True):
        writer.writerow([case_id, *(f"{v:.6f}" for v in row), f"{mean_foreground(row):.6f}"])
    with np.errstate(all="ignore"):
        writer.writerow(["mean", *(f"{v:.6f}" for v in np.nanmean(result.dice, axis=0)), f"{result.mean:.6f}"])
    return out.getvalue()


def evaluation_table(result: Evaluation) -> Table:
    """Rich table of the same content as the CSV."""
    table = Table(title="Dice per case")
    for column in ("case", *result.class_names, "mean"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for row in csv.reader(io.StringIO(evaluation_csv(result))):
        if row[0] != "case":
            table.add_row(*(value.replace("nan", "-") if i else value for i, value in enumerate(row)),
                          end_section=row[0] == result.case_ids[-1])
    return table


def run_evaluation(pred_dir: Path, ref_dir: Path, csv_path: Path | None = None, num_classes: int | None = None,
                   console: Console | None = None) -> Evaluation:
    """Evaluate, print the table and write the CSV (default ``PRED_DIR/dice.csv``)."""
    console = console or Console()
    result = evaluate_folders(pred_dir, ref_dir, num_classes)
    for problem in result.problems:
        console.print(f"[yellow]warning[/]: {problem}")
    console.print(evaluation_table(result))
    csv_path = csv_path or pred_dir / "dice.csv"
    atomic_write_text(csv_path, evaluation_csv(result))
    console.print(f"mean foreground Dice {result.mean:.4f} over {len(result.case_ids)} case(s); CSV {csv_path}")
    return result
