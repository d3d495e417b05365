"""How ``segkit evaluate`` reports its scores: the CSV text, the markdown summary and the console tables.

Everything here renders an ``Evaluation`` (``segkit.pipelines.evaluate``) and computes no score of its own:

- CSV (``evaluation_csv``), long format with header ``case,class,dice,hd95_mm,nsd``: one row per evaluated case
  and foreground class (class = name from ``REF/../dataset.json`` ``labels``, else ``class K``), values with six
  decimals and an empty cell for NaN; then one row per class with case ``mean``, the mean over cases ignoring NaN
  (empty when no case has a score).
- Markdown summary (``evaluation_markdown``): tolerance, number of cases, per-class table of mean ± std
  (population std, NaN ignored) of Dice, HD95 and NSD with the count of cases where the class is absent in both,
  the overall means, the problems found and the conventions for empty structures in plain words (``CONVENTIONS``).
- Rich tables for the console: Dice per case and class (``evaluation_table``) and the per-class mean ± std
  (``class_summary_table``).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.markup import escape
from rich.table import Table
from segkit.pipelines.evaluation_files import CSV_FIRST_LINE, SUMMARY_FIRST_LINE
from segkit.pipelines.postprocessing_choice import postprocessing_markdown

from segkit.engine.metrics import foreground_mean, mean_foreground, nan_stats_over_cases

if TYPE_CHECKING:  # annotations only: evaluate imports this module, so a runtime import would be circular
    from segkit.pipelines.evaluate import Evaluation

SUMMARY_ROW = "mean"  # the case cell of the CSV's per-class mean rows (no case may be called so)
CSV_HEADER = tuple(CSV_FIRST_LINE.split(","))  # case, class, dice, hd95_mm, nsd
CONVENTIONS = (
    "A class absent from both the prediction and the reference of a case has no score (NaN, an empty cell in "
    "the CSV) for Dice, HD95 and NSD; it is left out of every mean and standard deviation and counted under "
    '"absent in both". A class present in only one of them (a missed structure or a false positive) scores '
    "Dice 0 and NSD 0, and its HD95 is the diagonal of the volume in mm, a finite worst case that keeps the "
    "means finite while penalising the error. HD95 is the larger of the two directed 95th-percentile surface "
    "distances and NSD the fraction of both surfaces within the tolerance of the other (MONAI), with the voxel "
    "spacing taken from the reference header. The mean foreground scores are the mean over classes of each "
    "class's mean over cases (nnU-Net's foreground mean), the number training's validation reports."
)


def _cell(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"


def evaluation_csv(result: Evaluation) -> str:
    """CSV text in the long format of the module docstring: case,class,dice,hd95_mm,nsd, then the class means."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    columns = list(result.metrics().values())
    for i, case_id in enumerate(result.case_ids):
        for k, name in enumerate(result.class_names):
            writer.writerow([case_id, name, *(_cell(values[i, k]) for values in columns)])
    means = [nan_stats_over_cases(values)[0] for values in columns]
    for k, name in enumerate(result.class_names):
        writer.writerow([SUMMARY_ROW, name, *(_cell(values[k]) for values in means)])
    return out.getvalue()


def _mean_std(mean: float, std: float, digits: int) -> str:
    return "n/a" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _overall(values: np.ndarray, digits: int) -> str:
    score = foreground_mean(values)
    return "n/a" if math.isnan(score) else f"{score:.{digits}f}"


def _markdown_class_table(result: Evaluation) -> list[str]:
    stats = {name: nan_stats_over_cases(values) for name, values in result.metrics().items()}
    lines = [f"| Class | Dice | HD95 (mm) | NSD @ {result.tolerance_mm:g} mm | Cases scored | Absent in both |",
             "|---|---|---|---|---|---|"]
    absent = result.absent_in_both()
    for k, name in enumerate(result.class_names):
        cells = [_mean_std(stats[key][0][k], stats[key][1][k], 2 if key == "hd95_mm" else 4) for key in stats]
        scored, label = len(result.case_ids) - int(absent[k]), name.replace("|", "\\|")
        lines.append(f"| {label} | {' | '.join(cells)} | {scored} | {int(absent[k])} |")
    return lines


def evaluation_markdown(result: Evaluation, pred_dir: Path | None = None, ref_dir: Path | None = None) -> str:
    """Markdown summary: settings, per-class mean ± std table, overall means, problems and conventions."""
    lines = [SUMMARY_FIRST_LINE, ""]
    if pred_dir is not None and ref_dir is not None:
        lines += [f"- Predictions: `{pred_dir}`", f"- References: `{ref_dir}`"]
    lines += [f"- Cases evaluated: {len(result.case_ids)}",
              f"- NSD tolerance: {result.tolerance_mm:g} mm",
              f"- Mean foreground Dice: {_overall(result.dice, 4)}",
              f"- Mean foreground HD95: {_overall(result.hd95, 2)} mm",
              f"- Mean foreground NSD: {_overall(result.nsd, 4)}", "",
              "## Per class", "",
              "Mean ± standard deviation over the cases where the class is scored (population std).", "",
              *_markdown_class_table(result), "",
              ]
    if result.dice_largest is not None:
        lines += postprocessing_markdown(result.class_names, result.dice, result.dice_largest)
    lines += ["## Problems", ""]
    lines += [f"- {problem}" for problem in result.problems] or ["None."]
    lines += ["", "## Conventions", "", CONVENTIONS, ""]
    return "\n".join(lines)


def _fmt(value: float, digits: int = 4) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def evaluation_table(result: Evaluation) -> Table:
    """Rich table of Dice per case and class, the case mean and the class means."""
    table = Table(title="Dice per case")
    for column in ("case", *result.class_names, "mean"):
        table.add_column(escape(column), justify="left" if column == "case" else "right")
    for i, case_id in enumerate(result.case_ids):
        row = result.dice[i]
        table.add_row(escape(case_id), *map(_fmt, row), _fmt(mean_foreground(row)),
                      end_section=i == len(result.case_ids) - 1)
    table.add_row("mean", *map(_fmt, nan_stats_over_cases(result.dice)[0]), _fmt(result.mean))
    return table


def class_summary_table(result: Evaluation) -> Table:
    """Rich table per class: mean ± std of Dice, HD95 (mm) and NSD over cases, and cases absent in both."""
    table = Table(title=f"Per class (NSD tolerance {result.tolerance_mm:g} mm)")
    for column in ("class", "Dice", "HD95 mm", "NSD", "absent in both"):
        table.add_column(column, justify="left" if column == "class" else "right")
    stats = {name: nan_stats_over_cases(values) for name, values in result.metrics().items()}
    for k, name in enumerate(result.class_names):
        cells = [_mean_std(stats[key][0][k], stats[key][1][k], 2 if key == "hd95_mm" else 4) for key in stats]
        table.add_row(escape(name), *cells, str(int(result.absent_in_both()[k])))
    return table
