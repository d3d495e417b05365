"""Run logs: strict JSON lines, resume truncation, curves PNG, TensorBoard scalars, summary table."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import matplotlib.image
import pytest
from rich.console import Console

from segkit.engine import run_log
from segkit.engine.curves import plot_curves
from segkit.engine.run_log import RunLog, read_metrics, summary_table
from segkit.errors import SegkitError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _strict_loads(line: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(line, parse_constant=refuse)


def _step(step: int, loss: float = 1.0) -> dict:
    return {"step": step, "epoch": (step - 1) // 2, "loss": loss, "lr": 1e-3 / step, "seconds": 0.1}


def _val(step: int, mean: float, per_class: list[float], **extra: object) -> dict:
    return {"step": step, "epoch": (step - 1) // 2, "mean_dice": mean, "dice_per_class": per_class, **extra}


@pytest.fixture
def no_plot(monkeypatch: pytest.MonkeyPatch) -> list:
    """Replace the curves renderer with a recorder so non-plot tests stay fast."""
    calls: list = []
    monkeypatch.setattr(run_log, "plot_curves", lambda records, out, names=None: calls.append(list(records)))
    return calls


class FakeWriter:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []
        self.flushed = self.closed = 0

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def flush(self) -> None:
        self.flushed += 1

    def close(self) -> None:
        self.closed += 1


def test_lines_are_strict_json_and_round_trip(tmp_path: Path, no_plot: list) -> None:
    with RunLog(tmp_path, num_classes=3) as log:
        log.log_step(_step(1, loss=float("nan")))
        log.log_validation(_val(1, 0.5, [float("nan"), 0.5], mean_hd95=float("inf"), hd95_per_class=[math.nan, 2.0]))
    lines = (tmp_path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    parsed = [_strict_loads(line) for line in lines]
    assert parsed == read_metrics(tmp_path / "metrics.jsonl")
    assert [r["kind"] for r in parsed] == ["step", "val"]
    assert parsed[0] == {"kind": "step", "step": 1, "epoch": 0, "loss": None, "lr": 1e-3, "seconds": 0.1}
    assert parsed[1]["dice_per_class"] == [None, 0.5]
    assert parsed[1]["mean_hd95"] is None and parsed[1]["hd95_per_class"] == [None, 2.0]
    assert len(no_plot) == 1 and no_plot[0] == parsed  # curves refreshed from the file after validation


def test_truncate_after_drops_later_steps_and_partial_line(tmp_path: Path, no_plot: list) -> None:
    with RunLog(tmp_path, num_classes=2) as log:
        for step in range(1, 6):
            log.log_step(_step(step))
        log.log_validation(_val(4, 0.7, [0.7]))
    metrics = tmp_path / "metrics.jsonl"
    with metrics.open("a", encoding="utf-8") as handle:
        handle.write('{"kind": "step", "st')  # a killed process's partial line
    with RunLog(tmp_path, num_classes=2) as log:
        log.truncate_after(3)
        assert [r["step"] for r in read_metrics(metrics)] == [1, 2, 3]
        log.log_step(_step(4, loss=0.25))
    lines = metrics.read_text(encoding="utf-8").splitlines()
    assert [_strict_loads(line)["step"] for line in lines] == [1, 2, 3, 4]
    assert read_metrics(metrics)[-1]["loss"] == 0.25


def test_reopening_after_a_partial_line_keeps_new_records_parseable(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"kind": "step", "step": 1}\n{"kind": "st', encoding="utf-8")
    with RunLog(tmp_path, num_classes=2) as log:
        log.log_step(_step(2))
    assert [r["step"] for r in read_metrics(metrics)] == [1, 2]


def test_read_metrics_skips_an_unparseable_trailing_line(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"kind": "step", "step": 1}\n{"kind": "val", "ste', encoding="utf-8")
    assert read_metrics(metrics) == [{"kind": "step", "step": 1}]
    assert read_metrics(tmp_path / "missing.jsonl") == []


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[1] > image.shape[0]  # three panels side by side


def test_curves_png_is_written_and_refreshed(tmp_path: Path) -> None:
    with RunLog(tmp_path, num_classes=3, class_names=["background", "liver", "tumour"]) as log:
        for step in range(1, 41):
            log.log_step(_step(step, loss=1.0 / step))
        log.log_validation(_val(20, 0.6, [0.7, float("nan")]))
        curves = tmp_path / "curves.png"
        _assert_png(curves)
        first = curves.read_bytes()
        log.log_validation(_val(40, 0.8, [0.9, 0.7]))
    _assert_png(curves)
    assert curves.read_bytes() != first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_plot_curves_handles_missing_values_and_no_validation(tmp_path: Path) -> None:
    records = [{"kind": "step", "step": 1, "loss": None, "lr": None}, {"kind": "step", "step": 2, "loss": 0.5}]
    out = tmp_path / "curves.png"
    plot_curves(records, out)
    _assert_png(out)


def test_tensorboard_writer_receives_scalars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_plot: list) -> None:
    writer = FakeWriter()
    monkeypatch.setattr(run_log, "_tensorboard_writer", lambda log_dir, purge_step=None: writer)
    with RunLog(tmp_path, num_classes=3) as log:
        log.log_step(_step(1))
        log.log_step(_step(2))
        log.log_validation(_val(2, 0.5, [0.4, float("nan")], mean_hd95=None, mean_nsd=0.9))
    assert writer.scalars == [
        ("train/loss", 1.0, 1), ("train/lr", 1e-3, 1),
        ("train/loss", 1.0, 2), ("train/lr", 5e-4, 2),
        ("val/mean_dice", 0.5, 2), ("val/dice_class_1", 0.4, 2), ("val/mean_nsd", 0.9, 2),
    ]
    assert writer.flushed >= 1 and writer.closed == 1


def test_disabled_run_log_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_writer(log_dir: Path, purge_step: int | None = None) -> None:
        raise AssertionError("a disabled RunLog must not create a TensorBoard writer")

    monkeypatch.setattr(run_log, "_tensorboard_writer", no_writer)
    run_dir = tmp_path / "run"
    with RunLog(run_dir, num_classes=2, enabled=False) as log:
        log.log_step(_step(1))
        log.log_validation(_val(1, 0.5, [0.5]))
        log.truncate_after(0)
    assert not run_dir.exists()


def test_summary_table_marks_the_best_row() -> None:
    history = [
        {"kind": "step", "step": 1, "loss": 1.0},
        _val(10, 0.5, [0.4, 0.6], epoch=0, train_loss=0.9, mean_hd95=5.0),
        _val(20, 0.8123456, [0.7, None], epoch=1, train_loss=0.5, mean_nsd=0.95),
        _val(30, float("nan"), [None, None], epoch=2),
    ]
    table = summary_table(history, ["background", "liver", "tumour"])
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(table)
    text = console.export_text()
    assert "liver" in text and "tumour" in text
    best = [line for line in text.splitlines() if "★" in line]
    assert len(best) == 1 and "0.812" in best[0] and "20" in best[0]
    assert "0.950" in best[0] and "–" in best[0]  # 3 decimals; missing HD95 shown as a dash
    assert "5.0" in text  # HD95 in mm with one decimal
    assert [row.style for row in table.rows] == [None, "bold", None]


def test_a_linked_metrics_file_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    """A run folder shared by someone else could hold metrics.jsonl → any file; appending wrote through it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("no newline at the end")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(SegkitError, match=r"metrics.jsonl: a symbolic link where segkit keeps the run's log"):
        RunLog(run, num_classes=2)
    assert victim.read_text() == "no newline at the end"
