"""Each run's ``result.json`` (strict JSON, written atomically) and reading finished runs back for the report.

``result.json`` holds the variant, seed and config (with its digest), the held-out case ids and class names,
per case and class Dice / HD95 (mm) / NSD, per case forward seconds, peak memory (MiB) and checkerboard index,
and a ``summary`` of run-level numbers (see :data:`METRICS`). The report adds ``best_val_dice`` from the run's
``train/metrics.jsonl``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from segkit.compare.measure import CaseMeasurement
from segkit.compare.plan import RESULT, TRAIN_DIR, PlannedRun, check_planned, comparable_config, config_digest
from segkit.engine.metrics import foreground_mean
from segkit.engine.run_log import read_metrics
from segkit.errors import DataError
from segkit.io.atomic import atomic_write_text
from segkit.io.strict_json import json_safe
from segkit.models.summary import ModelSummary

FORMAT = 1
PLAN = "compare.json"


@dataclass(frozen=True)
class Metric:
    """A run-level number in the summary table: its key in ``summary``, title, digits, direction, scale."""

    key: str
    title: str
    digits: int
    higher_is_better: bool | None = None  # None: a cost, no direction
    scale: float = 1.0
    significant: bool = False  # digits are significant digits (for values spanning decades)


METRICS = (
    Metric("mean_dice", "Dice", 3, True),
    Metric("mean_hd95_mm", "HD95 mm", 2, False),
    Metric("mean_nsd", "NSD", 3, True),
    Metric("best_val_dice", "best val Dice", 3, True),
    Metric("parameters", "params M", 3, None, 1e-6),
    Metric("gflops_per_patch", "GFLOPs/patch", 2),
    Metric("train_seconds_per_epoch", "train s/epoch", 1),
    Metric("infer_seconds_per_volume", "infer s/volume", 3),
    Metric("peak_memory_mib", "peak MiB/volume", 0),
    Metric("checkerboard_index", "checkerboard", 2, False, significant=True),
)
CASE_METRICS = (("dice", "Dice", True), ("hd95_mm", "HD95 (mm)", False), ("nsd", "NSD", True))


@dataclass(frozen=True)
class Scores:
    """Evaluation of the held-out predictions: arrays of shape (cases, foreground classes), NaN = absent in both."""

    case_ids: list[str]
    class_names: list[str]
    dice: np.ndarray
    hd95: np.ndarray
    nsd: np.ndarray
    tolerance_mm: float


def _nanmean(values: Any) -> float:
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(array))


def _training_steps(run: PlannedRun) -> list[dict[str, Any]]:
    return [r for r in read_metrics(run.folder / TRAIN_DIR / "metrics.jsonl") if r.get("kind") == "step"]


def epochs_run(steps: list[dict[str, Any]], planned: int) -> int:
    """The epochs the run actually trained (the last step's epoch: fewer than ``planned`` when
    ``train.stop_at_dice`` ended it early); ``planned`` when the log has no step."""
    epochs = [int(r["epoch"]) for r in steps if isinstance(r.get("epoch"), int | float)]
    return max(epochs) if epochs else planned


def build_result(run: PlannedRun, scores: Scores, measured: list[CaseMeasurement], memory_method: str,
                 cost: ModelSummary, train_seconds: float, extra: dict[str, Any]) -> dict[str, Any]:
    """The ``result.json`` content of a finished run (``extra``: device, end-to-end predict seconds, ...)."""
    peaks = [m.peak_mib for m in measured]
    steps = _training_steps(run)
    epochs = epochs_run(steps, run.config.train.epochs)
    summary = {
        "mean_dice": foreground_mean(scores.dice), "mean_hd95_mm": foreground_mean(scores.hd95),
        "mean_nsd": foreground_mean(scores.nsd),
        "parameters": cost.parameters, "gflops_per_patch": cost.gflops, "patch_size": list(cost.input_shape[2:]),
        "train_seconds": train_seconds, "epochs": epochs, "epochs_planned": run.config.train.epochs,
        "train_seconds_per_epoch": train_seconds / epochs,
        "step_seconds_per_epoch": sum(float(r.get("seconds") or 0.0) for r in steps) / epochs,
        "infer_seconds_per_volume": _nanmean([m.seconds for m in measured]),
        "peak_memory_mib": max(peaks) if peaks else float("nan"),
        "checkerboard_index": _nanmean([m.checkerboard for m in measured]),
    }
    per_case = {"dice": scores.dice, "hd95_mm": scores.hd95, "nsd": scores.nsd,
                "infer_seconds": [m.seconds for m in measured], "peak_memory_mib": peaks,
                "checkerboard": [m.checkerboard for m in measured]}
    return {"format": FORMAT, "label": run.variant.label, "slug": run.variant.slug,
            "variant": dict(run.variant.values), "seed": run.seed, "config_digest": config_digest(run.config),
            "config": comparable_config(run.config), "cases": scores.case_ids, "classes": scores.class_names,
            "nsd_tolerance_mm": scores.tolerance_mm, "per_case": per_case, "summary": summary,
            "memory_method": memory_method, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Strict JSON (NaN/inf as null), written atomically."""
    atomic_write_text(path, json.dumps(json_safe(data), indent=1, allow_nan=False) + "\n")


@dataclass(frozen=True)
class RunResult:
    """A finished run as the report sees it."""

    label: str
    seed: int
    folder: Path
    data: dict[str, Any]
    curve: tuple[list[float], list[float]]  # validation steps and mean foreground Dice

    def value(self, key: str) -> float:
        """A summary number (NaN when missing or null)."""
        value = self.data["summary"].get(key)
        return float("nan") if value is None else float(value)


def validation_curve(folder: Path) -> tuple[list[float], list[float]]:
    """(steps, mean foreground Dice) of the validations in ``folder/train/metrics.jsonl``."""
    vals = [r for r in read_metrics(folder / TRAIN_DIR / "metrics.jsonl") if r.get("kind") == "val"]
    pairs = [(float(r["step"]), float(r["mean_dice"])) for r in vals
             if isinstance(r.get("step"), int | float) and isinstance(r.get("mean_dice"), int | float)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def load_plan(out: Path) -> dict[str, Any]:
    """``OUT/compare.json``, the plan written when the comparison started."""
    path = Path(out) / PLAN
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise DataError(f"{out}: no {PLAN}, so not a segkit compare folder; run 'segkit compare --config ... --out "
                        f"{out}' first") from None
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); rerun the comparison to rewrite it") from None


def load_results(out: Path, plan: dict[str, Any]) -> list[RunResult]:
    """The finished runs of the plan, in plan order; a run without a readable ``result.json`` is left out, one made
    with another config than the plan records for it is an error."""
    found = []
    for entry in plan["runs"]:
        folder = Path(out) / entry["folder"]
        try:
            data = json.loads((folder / RESULT).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        check_planned(folder, entry, data)
        steps, dice = validation_curve(folder)
        data["summary"]["best_val_dice"] = max(dice) if dice else None
        found.append(RunResult(entry["label"], int(entry["seed"]), folder, data, (steps, dice)))
    return found


def per_case(run: RunResult, metric: str) -> dict[str, float]:
    """Per held-out case of one run: the metric's mean over foreground classes (NaN when none has a value)."""
    values = np.asarray(run.data["per_case"][metric], dtype=np.float64)  # JSON null → NaN
    return {case_id: _nanmean(row) for case_id, row in zip(run.data["cases"], values, strict=True)}
