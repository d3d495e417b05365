"""A tiny real comparison: report sections and figures, numbers traceable to the runs' files, resumability."""

from __future__ import annotations

import base64
import json
import math
import re

import nibabel as nib
import numpy as np
import pytest

from segkit.cli import main
from segkit.compare.results import METRICS
from tests.compare.conftest import VARIANTS, History, results

SECTIONS = ("Summary", "Per class", "Paired differences against transposed", "Validation curves", "Dice per variant",
            "Accuracy and cost", "Qualitative: one held-out slice", "Artefacts: logits on a zoomed region",
            "How the numbers were measured", "Runs")
FIGURES = ("curves.png", "dice_bars.png", "dice_vs_params.png", "dice_vs_latency.png", "qualitative.png",
           "artefacts.png")
PNG = b"\x89PNG\r\n\x1a\n"


def _table(markdown: str, first_header: str) -> list[list[str]]:
    """The rows (cells) of the markdown table whose header starts with ``| first_header |``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_report_has_every_section_and_figure(history: History) -> None:
    markdown = (history.out / "report.md").read_text(encoding="utf-8")
    page = (history.out / "report.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f"\n## {section}\n" in markdown
        assert f"<h2>{section}</h2>" in page
    embedded = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    assert len(embedded) == len(FIGURES)
    for name, data in zip(FIGURES, embedded, strict=True):
        stored = (history.out / "figures" / name).read_bytes()
        assert stored.startswith(PNG) and base64.b64decode(data) == stored
        assert f"](figures/{name})" in markdown
    assert "<script" not in page and "<link" not in page  # self-contained: nothing loaded from elsewhere
    assert not re.search(r'(src|href)="(?!data:image/png;base64,)', page)
    assert "Finished runs: 6 of 6" in markdown and "Not available" not in markdown


def _metrics_best(result: dict, out) -> float:
    folder = out / "runs" / result["slug"] / f"seed{result['seed']}" / "train" / "metrics.jsonl"
    lines = [json.loads(line) for line in folder.read_text(encoding="utf-8").splitlines()]
    return max(r["mean_dice"] for r in lines if r["kind"] == "val")


def test_summary_table_equals_the_runs_files(history: History) -> None:
    rows = _table((history.out / "report.md").read_text(encoding="utf-8"), "variant | seeds")
    header, body = rows[0], {row[0]: row for row in rows[2:]}
    assert set(body) == set(VARIANTS)
    everything = results(history.out)
    for label in VARIANTS:
        mine = [r for r in everything if r["label"] == label]
        assert body[label][1] == "3" and len(mine) == 3
        for metric in METRICS:
            values = np.array([_metrics_best(r, history.out) if metric.key == "best_val_dice"
                               else r["summary"][metric.key] for r in mine], dtype=float)
            shown = [float(v) for v in body[label][header.index(metric.title)].split(" ± ")]
            for number, exact in zip(shown, (values.mean(), values.std(ddof=1)), strict=True):
                exact *= metric.scale
                if metric.significant:  # rounded to `digits` significant digits
                    assert number == pytest.approx(exact, rel=0.5 * 10 ** (1 - metric.digits)), metric.key
                else:
                    assert abs(number - exact) <= 0.5 * 10**-metric.digits + 1e-12, metric.key
    csv_rows = [line.split(",") for line in (history.out / "summary.csv").read_text().splitlines()[1:]]
    dice = {row[0]: float(row[2]) for row in csv_rows if row[1] == "mean_dice"}
    for label in VARIANTS:
        expected = np.mean([r["summary"]["mean_dice"] for r in everything if r["label"] == label])
        assert dice[label] == pytest.approx(expected, rel=1e-12)


def test_result_dice_is_the_dice_of_the_written_prediction(history: History) -> None:
    for result in results(history.out):
        folder = history.out / "runs" / result["slug"] / f"seed{result['seed']}"
        case = result["cases"][0]
        prediction = np.asarray(nib.load(folder / "predictions" / f"{case}.nii.gz").dataobj)
        reference = np.asarray(nib.load(result["panel"]["label"]).dataobj)
        for k, stored in enumerate(result["per_case"]["dice"][0], start=1):
            p, r = prediction == k, reference == k
            if not p.any() and not r.any():
                assert stored is None  # absent in both: NaN, written as null
            else:
                assert stored == pytest.approx(2 * (p & r).sum() / (p.sum() + r.sum()), abs=1e-6)
        assert result["summary"]["mean_dice"] == pytest.approx(
            np.nanmean(np.array(result["per_case"]["dice"], dtype=float)))
        assert result["summary"]["parameters"] > 0 and result["summary"]["gflops_per_patch"] > 0
        assert 0.0 <= result["summary"]["checkerboard_index"] <= 1.0
        assert result["summary"]["infer_seconds_per_volume"] > 0 and result["summary"]["peak_memory_mib"] >= 0


def test_results_are_strict_json_inside_the_output_folder(history: History) -> None:
    def refuse(token: str) -> float:
        raise AssertionError(f"non-standard JSON number {token}")

    names = sorted(str(p.relative_to(history.out)) for p in history.out.glob("runs/*/*/result.json"))
    assert names == [f"runs/upsample-{v}/seed{s}/result.json" for v in ("nearest", "transposed") for s in range(3)]
    for path in history.out.glob("runs/*/*/result.json"):
        json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_rerun_skips_finished_runs(history: History) -> None:
    assert "4 finished already (skipped), 0 to run" in history.rerun.output
    assert "training" not in history.rerun.output
    assert history.rerun.result_mtimes == history.first.result_mtimes


def test_more_seeds_run_only_the_new_ones(history: History) -> None:
    assert "6 runs (2 variants × 3 seeds)" in history.more.output
    assert "4 finished already (skipped), 2 to run" in history.more.output
    started = re.findall(r"run \d/\d: (\w+), seed (\d)", history.more.output)
    assert sorted(started) == [("nearest", "2"), ("transposed", "2")]
    assert {k: v for k, v in history.more.result_mtimes.items() if "seed2" not in k} == history.first.result_mtimes


def test_report_only_rebuilds_the_same_report(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    names = ("report.md", "report.html", "summary.csv")
    before = {name: (history.out / name).read_bytes() for name in names}
    for name in names:
        (history.out / name).unlink()
    assert main(["compare", "--report-only", str(history.out)]) == 0
    assert {name: (history.out / name).read_bytes() for name in names} == before
    assert "report of 6 finished run(s)" in capsys.readouterr().out


def test_paired_rows_cover_every_metric(history: History) -> None:
    rows = _table((history.out / "report.md").read_text(encoding="utf-8"), "variant | metric")
    assert rows[0][:6] == ["variant", "metric", "seeds", "cases", "mean difference",
                           "95% CI (bootstrap over seeds × cases)"]
    assert [row[:4] for row in rows[2:]] == [["nearest", "Dice", "3", "1"], ["nearest", "HD95 (mm)", "3", "1"],
                                             ["nearest", "NSD", "3", "1"]]
    everything = results(history.out)
    by_label = {label: np.mean([np.nanmean(np.array(r["per_case"]["dice"], dtype=float))
                                for r in everything if r["label"] == label]) for label in VARIANTS}
    difference = by_label["nearest"] - by_label["transposed"]
    assert rows[2][4] == f"{difference:+.4f}" and not math.isnan(difference)
