"""``result.json``'s run-level numbers from a run's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segkit.compare.measure import CaseMeasurement
from segkit.compare.plan import TRAIN_DIR, plan_runs
from segkit.compare.results import Scores, build_result
from segkit.compare.spec import CompareRequest, resolve_comparison
from segkit.models.summary import ModelSummary


def test_seconds_per_epoch_divide_by_the_epochs_a_run_stopped_early_trained(tmp_path: Path) -> None:
    """``train.stop_at_dice`` ended the run after 3 of 10 epochs: the per-epoch times are over 3 epochs."""
    comparison = resolve_comparison(CompareRequest("demo_unet_resnet34.yaml", ("model.upsample=nearest",),
                                                   ("train.epochs=10", "train.steps_per_epoch=2",
                                                    "train.stop_at_dice=0.5"), 1, tmp_path))
    run = plan_runs(comparison)[1][0]
    log = run.folder / TRAIN_DIR / "metrics.jsonl"
    log.parent.mkdir(parents=True)
    steps = [{"kind": "step", "step": s, "epoch": (s + 1) // 2, "seconds": 1.5} for s in range(1, 7)]
    log.write_text("".join(json.dumps(r) + "\n" for r in
                           [*steps, {"kind": "val", "epoch": 3, "step": 6, "mean_dice": 0.6}]))
    scores = Scores(["a"], ["organ"], np.array([[0.6]]), np.array([[2.0]]), np.array([[0.7]]), 1.0)
    result = build_result(run, scores, [CaseMeasurement("a", 0.1, 5.0, 0.01)], "test", ModelSummary(
        "resnet34", 3, 10, 5, 1.0, (1, 1, 8, 8, 8)), 30.0, {})
    summary = result["summary"]
    assert (summary["epochs"], summary["epochs_planned"]) == (3, 10)
    assert summary["train_seconds_per_epoch"] == pytest.approx(10.0)
    assert summary["step_seconds_per_epoch"] == pytest.approx(3.0)
