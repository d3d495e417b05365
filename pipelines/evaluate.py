"""Evaluate pipeline: Dice, HD95 and normalised surface Dice per case and class, prediction folder vs reference folder.

Predictions and references are paired by case id (file name without the image suffix) and must lie on the same
grid. Spacing comes from each reference's affine (column norms of its rotation-zoom block, in the array's axis
order), so HD95 and the NSD tolerance are in millimetres. The metrics are ``segkit.engine.metrics``'s
``dice_per_class`` and ``surface_metrics_per_class`` (MONAI): HD95 is the larger of the two directed
95th-percentile surface distances; NSD is the fraction of both surfaces lying within the tolerance of the other.

Conventions for empty structures (per case and class):

- class absent from both prediction and reference: no score (NaN) for Dice, HD95 and NSD; left out of every mean
  and standard deviation, and counted as "absent in both";
- class present in only one of them (missed structure or false positive): Dice 0, NSD 0 and HD95 the diagonal
  of the volume in mm, a finite worst case that keeps means finite.

Outputs of ``run_evaluation``: a CSV (default ``PRED/evaluation.csv``), long format with header
``case,class,dice,hd95_mm,nsd``, and a markdown summary (default ``PRED/evaluation.md``); their formats, and the
console tables, are described and rendered in ``segkit.pipelines.evaluation_report``.

Problems (a reference without prediction, a prediction without reference, a grid mismatch, an unreadable file,
labels out of range) are listed and the case is skipped; the other cases are still evaluated (the CLI then exits
with 1). ``CASE.preview.png`` beside a prediction ``CASE`` is ``segkit predict --preview``'s picture, not a case.

When no case can be evaluated, nothing is written and an earlier run's CSV and summary at the same paths are
removed (recognised by their first line), so they are not read as this run's results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from segkit.pipelines.evaluation_files import check_report_path, remove_stale, write_report
from segkit.pipelines.evaluation_report import (
    SUMMARY_ROW,
    class_summary_table,
    evaluation_csv,
    evaluation_markdown,
    evaluation_table,
)
from segkit.pipelines.postprocessing_choice import largest_only_dice, postprocessing_table, suggestion_line

from segkit.data.cases import case_id_of
from segkit.data.check_2d import colour_label_message
from segkit.data.check_case import BLACK_WHITE_FIX
from segkit.data.label_names import declared_names
from segkit.engine.metrics import dice_per_class, foreground_mean, surface_metrics_per_class
from segkit.errors import DataError, SegkitError
from segkit.inference.memory import is_out_of_memory
from segkit.io.image_io import is_image_file, read_label_array
from segkit.io.side_files import preview_path

AFFINE_TOLERANCE = 1e-3  # mm; predictions must lie on the reference grid


@dataclass(frozen=True)
class Evaluation:
    """Scores per case (rows) and foreground class (columns), plus problems found.

    ``dice``, ``hd95`` (mm) and ``nsd`` (at ``tolerance_mm``) are float arrays of shape (cases, classes - 1);
    NaN marks a class absent from both prediction and reference.
    """

    case_ids: list[str]
    class_names: list[str]
    dice: np.ndarray
    problems: list[str]
    hd95: np.ndarray
    nsd: np.ndarray
    tolerance_mm: float
    dice_largest: np.ndarray | None = None  # Dice with each label's largest component only (--postprocessing)

    @property
    def mean(self) -> float:
        """Mean foreground Dice: the mean over classes of each class's mean over cases (nnU-Net's foreground mean)."""
        return foreground_mean(self.dice) if len(self.case_ids) else float("nan")

    def metrics(self) -> dict[str, np.ndarray]:
        """The score arrays by CSV column name."""
        return {"dice": self.dice, "hd95_mm": self.hd95, "nsd": self.nsd}

    def absent_in_both(self) -> np.ndarray:
        """Per class, the number of cases where the class is in neither prediction nor reference."""
        return np.isnan(self.dice).sum(axis=0)


def _image_files(folder: Path) -> dict[str, list[Path]]:
    """The image files in ``folder`` by case id (usually one each)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and is_image_file(path):
            found.setdefault(case_id_of(path), []).append(path)
    return found


def _shared_case_ids(found: dict[str, list[Path]]) -> list[str]:
    """A problem line for each case id that several files share (``c.nii`` and ``c.nii.gz``: which one is the case
    is not for segkit to guess)."""
    return [f"{paths[0].parent}: {' and '.join(p.name for p in paths)} are all case {case_id}; not scored — keep "
            "one of them" for case_id, paths in found.items() if len(paths) > 1]


def _predictions_by_case(folder: Path) -> dict[str, list[Path]]:
    """The label maps in ``folder`` by case id, without ``segkit predict --preview``'s ``CASE.preview.png``."""
    found = _image_files(folder)
    previews = {preview_path(path) for paths in found.values() for path in paths}
    kept = {c: [p for p in paths if p not in previews] for c, paths in found.items()}
    return {c: paths for c, paths in kept.items() if paths}


def _paired_files(pred_dir: Path, ref_dir: Path) -> tuple[dict[str, Path], dict[str, Path], list[str]]:
    """Predictions and references by case id, and the problems: case ids several files share (left out on both
    sides), then references without prediction and predictions without reference."""
    pred_found, ref_found = _predictions_by_case(pred_dir), _image_files(ref_dir)
    shared = {case_id for found in (pred_found, ref_found) for case_id, paths in found.items() if len(paths) > 1}
    preds = {c: paths[0] for c, paths in pred_found.items() if c not in shared}
    refs = {c: paths[0] for c, paths in ref_found.items() if c not in shared}
    return preds, refs, _shared_case_ids(pred_found) + _shared_case_ids(ref_found) + _unpaired(preds, refs, ref_dir)


def _unpaired(preds: dict[str, Path], refs: dict[str, Path], ref_dir: Path) -> list[str]:
    """A problem line for each reference without prediction and each prediction without reference."""
    return ([f"{refs[c]}: no prediction for this case" for c in refs if c not in preds]
            + [f"{preds[c]}: no reference for this case in {ref_dir}; not scored" for c in preds if c not in refs])


def _class_names(ref_dir: Path, num_classes: int) -> list[str]:
    """Foreground class names from ``dataset.json`` beside the reference folder, else ``class K``."""
    names = declared_names(ref_dir.parent)
    return [names.get(k, f"class {k}") for k in range(1, num_classes)]


def spacing_from_affine(affine: np.ndarray, ndim: int) -> tuple[float, ...]:
    """Voxel size in mm along each of the first ``ndim`` array axes: column norms of the affine's linear block."""
    affine = np.asarray(affine, dtype=np.float64)
    size = affine.shape[0] - 1
    if ndim > size:
        raise DataError(f"a {ndim}-D label map has a {size}-D affine")
    return tuple(float(v) for v in np.linalg.norm(affine[:size, :size], axis=0)[:ndim])


def _squeeze_trailing(array: np.ndarray) -> np.ndarray:
    """Drop trailing singleton axes beyond the second: a NIfTI label map saved as X×Y×Z×1 is 3D, one saved as X×Y×1
    is a 2D image (as segkit reads it everywhere), whose surfaces are its contours, not its whole area."""
    while array.ndim > 2 and array.shape[-1] == 1:
        array = array[..., 0]
    return array


def _load_pair(pred_path: Path, ref_path: Path, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Prediction, reference and the reference spacing in mm; DataError when they cannot be compared."""
    for path in (pred_path, ref_path):
        colour = colour_label_message(path)  # a colour or palette PNG would be compared as 3 channels
        if colour is not None:
            raise DataError(f"{path}: {colour}")
    pred, pred_affine = read_label_array(pred_path)
    ref, ref_affine = read_label_array(ref_path)
    pred, ref = _squeeze_trailing(pred), _squeeze_trailing(ref)
    if (pred.shape != ref.shape or pred_affine.shape != ref_affine.shape
            or not np.allclose(pred_affine, ref_affine, atol=AFFINE_TOLERANCE)):
        raise DataError(f"{pred_path}: grid {pred.shape} differs from reference {ref.shape} or its affine")
    if ref.ndim not in (2, 3):
        raise DataError(f"{ref_path}: label map has shape {ref.shape}; expected 2D or 3D")
    for path, labels in ((pred_path, pred), (ref_path, ref)):
        _check_label_range(path, labels, num_classes)
    return pred, ref, spacing_from_affine(ref_affine, ref.ndim)


def _check_label_range(path: Path, labels: np.ndarray, num_classes: int | None) -> None:
    """DataError naming ``path`` when its labels are negative or not below ``num_classes``, or when it holds only 0
    and 255 (a binary mask saved in black and white, which would otherwise be scored as 255 classes)."""
    if not labels.size:
        return
    low, high = int(labels.min()), int(labels.max())
    if high == 255 and low == 0 and (num_classes is None or num_classes < 256) and not np.any(labels % 255):
        raise DataError(f"{path}: label holds only 0 and 255 — {BLACK_WHITE_FIX}")
    if low < 0 or (num_classes is not None and high >= num_classes):
        limit = f"0..{num_classes - 1}" if num_classes is not None else "0 or more"
        raise DataError(f"{path}: labels {low}..{high} outside {limit} (see --num-classes)")


def _score_case(pred: np.ndarray, ref: np.ndarray, spacing: tuple, num_classes: int | None,
                tolerance_mm: float, postprocessing: bool) -> np.ndarray:
    """Dice, HD95 and NSD of one case (and with ``postprocessing`` the Dice with each label's largest component
    only): array (3 or 4, classes - 1), classes from ``num_classes`` or the labels."""
    classes = max(num_classes or int(max(pred.max(), ref.max(), 0)) + 1, 2)
    hd95, nsd = surface_metrics_per_class(pred, ref, classes, spacing, tolerance_mm)
    rows = [dice_per_class(pred, ref, classes), hd95, nsd]
    if postprocessing:
        rows.append(largest_only_dice(pred, ref, classes))
    return np.stack(rows).astype(np.float64)


def _unscorable(pred_path: Path, num_classes: int | None, exc: Exception) -> str:
    """The problem line for a case whose scores do not fit in memory (one array per class); other errors propagate."""
    if not is_out_of_memory(exc):
        raise exc
    asked = f"--num-classes {num_classes}" if num_classes is not None else "its largest label"
    return (f"{pred_path}: scoring one array per class for {asked} does not fit in memory; not scored — give "
            "--num-classes no larger than the labels need")


def _padded(scores: list[np.ndarray], width: int) -> np.ndarray:
    """Stack per-case (n, k) scores into (n, cases, width); classes beyond a case's labels are absent: NaN."""
    out = np.full((scores[0].shape[0], len(scores), width), np.nan)
    for i, case_scores in enumerate(scores):
        out[:, i, : case_scores.shape[1]] = case_scores[:, :width]
    return out


def _no_case_error(pred_dir: Path, ref_dir: Path, case_problems: list[str]) -> DataError:
    if not case_problems:
        return DataError(f"no prediction in {pred_dir} matches a reference in {ref_dir} by case id")
    return DataError(f"none of the {len(case_problems)} case(s) found in both folders could be evaluated; "
                     f"first problem: {case_problems[0]}")


def evaluate_folders(pred_dir: Path, ref_dir: Path, num_classes: int | None = None,
                     tolerance_mm: float = 1.0, postprocessing: bool = False) -> Evaluation:
    """Dice, HD95 and NSD of every prediction that has a reference with the same case id.

    Cases are read one at a time. ``num_classes`` counts the background; by default it is the largest label
    found plus one. Cases that cannot be compared are listed in ``problems`` and skipped. ``postprocessing``
    also scores each prediction with every label reduced to its largest connected component (``dice_largest``).
    """
    if not (math.isfinite(tolerance_mm) and tolerance_mm > 0):
        raise DataError(f"the NSD tolerance must be a positive number of mm, got {tolerance_mm}")
    preds, refs, problems = _paired_files(pred_dir, ref_dir)
    first_case_problem = len(problems)
    case_ids, scores, top_labels = [], [], {}
    for case_id in sorted(set(preds) & set(refs)):
        if case_id == SUMMARY_ROW:
            problems.append(f"{preds[case_id]}: case id {SUMMARY_ROW!r} names the CSV's per-class mean rows; not "
                            "scored — rename the prediction and reference files")
            continue
        try:
            pred, ref, spacing = _load_pair(preds[case_id], refs[case_id], num_classes)
        except DataError as exc:
            problems.append(str(exc))
            continue
        try:
            case_scores = _score_case(pred, ref, spacing, num_classes, tolerance_mm, postprocessing)
        except Exception as exc:
            problems.append(_unscorable(preds[case_id], num_classes, exc))
            continue
        case_ids.append(case_id)
        top_labels[case_id] = (int(pred.max(initial=0)), int(ref.max(initial=0)))
        scores.append(case_scores)
    if not case_ids:
        raise _no_case_error(pred_dir, ref_dir, problems[first_case_problem:])
    classes = max(num_classes or _reference_classes(ref_dir, top_labels), 2)
    problems += [f"{preds[c]}: label {pred_top} is in no reference (they hold labels up to {classes - 1}), so it is "
                 "no class and its voxels count as background; the case's classes are scored — check the model's "
                 "classes, or give --num-classes" for c, (pred_top, _) in top_labels.items() if pred_top >= classes]
    dice, hd95, nsd, *largest = _padded(scores, classes - 1)
    return Evaluation(case_ids, _class_names(ref_dir, classes), dice, problems, hd95, nsd, float(tolerance_mm),
                      largest[0] if largest else None)


def _reference_classes(ref_dir: Path, top_labels: dict[str, tuple[int, int]]) -> int:
    """Classes counted with the background, from the references: their largest label, or the labels the dataset's
    ``dataset.json`` declares beside the reference folder, whichever is more. A label only a prediction holds is
    not a class."""
    declared = declared_names(ref_dir.parent)
    return max(max(ref_top for _, ref_top in top_labels.values()) + 1, max(declared, default=-1) + 1)


def _evaluate_or_clear(pred_dir: Path, ref_dir: Path, outputs: list[Path], num_classes: int | None,
                       tolerance_mm: float, postprocessing: bool) -> Evaluation:
    """:func:`evaluate_folders`; when it fails, an earlier run's ``outputs`` are removed first (the error says so)."""
    try:
        return evaluate_folders(pred_dir, ref_dir, num_classes, tolerance_mm, postprocessing)
    except Exception as exc:
        removed = remove_stale(outputs)
        if removed and isinstance(exc, SegkitError):
            names = " and ".join(str(path) for path in removed)
            raise type(exc)(f"{exc} (removed {names} of an earlier run, which no longer describe "
                            f"{pred_dir})") from None
        raise


def _refuse_one_path_for_two(pred_dir: Path, ref_dir: Path, csv_path: Path, summary_path: Path) -> None:
    """Refuse one folder as both predictions and references (every case would score a perfect 1.0, and the reports
    would land among the references), and one file as both CSV and summary (the summary would replace the CSV)."""
    if pred_dir.resolve() == ref_dir.resolve():
        raise DataError(f"--pred {pred_dir} and --ref {ref_dir} are the same folder, so every case would score a "
                        "perfect 1.0; give the folder of reference labels as --ref")
    if csv_path.resolve() == summary_path.resolve():
        raise DataError(f"--csv and --summary are both {csv_path}, so the summary would replace the CSV; give them "
                        "different paths")


def run_evaluation(pred_dir: Path, ref_dir: Path, csv_path: Path | None = None, num_classes: int | None = None,
                   console: Console | None = None, *, tolerance_mm: float = 1.0,
                   summary_path: Path | None = None, postprocessing: bool = False) -> Evaluation:
    """Evaluate, print the tables, write the CSV and the markdown summary (atomically); when no case can be
    evaluated, an earlier run's CSV and summary at these paths are removed and the error says so.

    Defaults: ``PRED_DIR/evaluation.csv`` and ``PRED_DIR/evaluation.md``; ``tolerance_mm`` is the NSD tolerance;
    ``postprocessing`` adds which labels gain from keeping only their largest connected component.
    """
    console = console or Console()
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    csv_path = Path(csv_path) if csv_path is not None else pred_dir / "evaluation.csv"
    summary_path = Path(summary_path) if summary_path is not None else pred_dir / "evaluation.md"
    _refuse_one_path_for_two(pred_dir, ref_dir, csv_path, summary_path)
    for path in (csv_path, summary_path):
        check_report_path(path)
    result = _evaluate_or_clear(pred_dir, ref_dir, [csv_path, summary_path], num_classes, tolerance_mm,
                                postprocessing)
    for problem in result.problems:
        console.print(f"[yellow]warning[/]: {escape(problem)}")
    console.print(evaluation_table(result))
    console.print(class_summary_table(result))
    if result.dice_largest is not None:
        console.print(postprocessing_table(result.class_names, result.dice, result.dice_largest))
        console.print(escape(suggestion_line(result.dice, result.dice_largest)), highlight=False)
    for path, text in ((csv_path, evaluation_csv(result)),
                       (summary_path, evaluation_markdown(result, pred_dir, ref_dir))):
        write_report(path, text)
    console.print(f"mean foreground Dice {result.mean:.4f} over {len(result.case_ids)} case(s); "
                  f"CSV {escape(str(csv_path))}; summary {escape(str(summary_path))}", highlight=False)
    return result
