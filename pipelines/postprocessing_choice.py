"""Which labels gain from keeping only their largest connected component — nnU-Net's postprocessing choice.

``segkit evaluate --postprocessing`` scores every prediction a second time with each label reduced to its
largest component (``inference.postprocess``). Reducing one label changes only that label's voxels (they become
background), so one pass over all labels gives each label's score as if it alone were postprocessed. As nnU-Net
decides after its cross-validation, a label is suggested for ``infer.keep_largest`` when its mean Dice over the
cases rises.
"""

from __future__ import annotations

import numpy as np
from rich.markup import escape
from rich.table import Table

from segkit.engine.metrics import dice_per_class, nan_stats_over_cases
from segkit.inference.postprocess import keep_largest_components


def largest_only_dice(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice per foreground class of ``pred`` with every label kept only in its largest connected component."""
    reduced = pred.copy()
    keep_largest_components(reduced, range(1, num_classes))
    return dice_per_class(reduced, ref, num_classes)


def suggested_labels(dice: np.ndarray, dice_largest: np.ndarray) -> list[int]:
    """Labels (1-based) whose mean Dice over the cases is higher with only the largest component kept."""
    before, after = nan_stats_over_cases(dice)[0], nan_stats_over_cases(dice_largest)[0]
    return [k + 1 for k in range(dice.shape[1]) if not np.isnan(before[k]) and after[k] > before[k]]


def suggestion_line(dice: np.ndarray, dice_largest: np.ndarray) -> str:
    """The config line to use, or why there is none."""
    labels = suggested_labels(dice, dice_largest)
    if not labels:
        return "keeping only the largest component raises no label's mean Dice: leave infer.keep_largest empty"
    return (f"keeping only the largest component raises the mean Dice of label(s) {', '.join(map(str, labels))}: "
            f"set infer.keep_largest: [{', '.join(map(str, labels))}] (or predict with --keep-largest "
            f"{' '.join(map(str, labels))})")


def _changed_cases(dice: np.ndarray, dice_largest: np.ndarray) -> np.ndarray:
    return (~np.isclose(dice, dice_largest, rtol=0.0, atol=1e-12) & ~np.isnan(dice)).sum(axis=0)


def postprocessing_rows(class_names: list[str], dice: np.ndarray, dice_largest: np.ndarray) -> list[list[str]]:
    """Per class: name, mean Dice as predicted, with the largest component only, the change, cases changed."""
    before, after = nan_stats_over_cases(dice)[0], nan_stats_over_cases(dice_largest)[0]
    changed = _changed_cases(dice, dice_largest)
    rows = []
    for k, name in enumerate(class_names):
        if np.isnan(before[k]):
            rows.append([name, "-", "-", "-", "0"])
            continue
        rows.append([name, f"{before[k]:.4f}", f"{after[k]:.4f}", f"{after[k] - before[k]:+.5f}", str(changed[k])])
    return rows


POSTPROCESSING_COLUMNS = ("class", "Dice", "Dice, largest component only", "change", "cases changed")


def postprocessing_table(class_names: list[str], dice: np.ndarray, dice_largest: np.ndarray) -> Table:
    """Rich table of :func:`postprocessing_rows`."""
    table = Table(title="Keeping only the largest connected component (infer.keep_largest)")
    for column in POSTPROCESSING_COLUMNS:
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in postprocessing_rows(class_names, dice, dice_largest):
        table.add_row(escape(row[0]), *row[1:])
    return table


def postprocessing_markdown(class_names: list[str], dice: np.ndarray, dice_largest: np.ndarray) -> list[str]:
    """The markdown section: the table and the suggestion."""
    lines = ["## Postprocessing: largest connected component", "",
             "Mean Dice per class as predicted and with only the class's largest connected component kept "
             "(full connectivity); a class is suggested when its mean rises.", "",
             f"| {' | '.join(POSTPROCESSING_COLUMNS)} |", "|---|---|---|---|---|"]
    lines += [f"| {row[0].replace('|', chr(92) + '|')} | {' | '.join(row[1:])} |"
              for row in postprocessing_rows(class_names, dice, dice_largest)]
    return [*lines, "", suggestion_line(dice, dice_largest) + ".", ""]
