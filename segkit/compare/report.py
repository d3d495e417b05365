"""``OUT/report.md`` (figures in ``OUT/figures/``), the self-contained ``OUT/report.html`` and ``OUT/summary.csv``,
built from the plan (``compare.json``) and the finished runs only, so ``--report-only`` rebuilds them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segkit.compare import document as doc
from segkit.compare.figures import curves_figure, dice_bars_figure, scatter_figure
from segkit.compare.panel_data import artefact_blocks, qualitative_blocks
from segkit.compare.results import RunResult
from segkit.compare.spec import merge_fixed, value_text
from segkit.compare.stats import CONFIDENCE, RESAMPLES
from segkit.compare.tables import (
    Summary,
    by_variant,
    class_table,
    dice_bars,
    paired_results,
    paired_table,
    summarise,
    summary_csv,
    summary_table,
)
from segkit.errors import ConfigError
from segkit.io.atomic import atomic_write_bytes, atomic_write_text, own_folder

REPORT_MD, REPORT_HTML, SUMMARY_CSV = "report.md", "report.html", "summary.csv"
SUMMARY_TEXT = (
    "Mean ± standard deviation over seeds (sample std; a single number when a variant has one seed). Dice, HD95 "
    "and NSD are each run's mean foreground scores (the mean over foreground classes of each class's mean over "
    "held-out cases, nnU-Net's foreground mean); best val Dice is the run's highest "
    "validation Dice during training; params M are millions of parameters; GFLOPs are for one training patch; "
    "train s/epoch is training wall time (validation and checkpoints included) divided by the epochs the run "
    "trained (fewer than train.epochs when train.stop_at_dice ended it early); infer "
    "s/volume is the forward pass (sliding window) of one held-out volume; peak MiB/volume is the largest "
    "per-volume peak memory (see the notes below); checkerboard is the share of the logits' spectral energy at "
    "the period-2 frequency (lower is smoother).")


@dataclass(frozen=True)
class ReportFiles:
    """Where the report went."""

    markdown: Path
    html: Path
    csv: Path
    figures: list[Path]


def fixed_overrides(plan: dict[str, Any]) -> list[str]:
    """The plan's fixed overrides, one value per key: a plan written before they were merged lists the spec's
    ``set`` and then ``--set``, a key in both twice, and the runs used the later value."""
    overrides = [str(item) for item in plan.get("overrides") or []]
    try:
        return merge_fixed([("--set", item) for item in overrides])[0]
    except ConfigError:  # not KEY=VALUE (an edited plan): shown as written
        return overrides


def _setup(plan: dict[str, Any], runs: list[RunResult]) -> list[doc.Block]:
    vary = "; ".join(f"{doc.code(key)} = {', '.join(doc.literal(value_text(v)) for v in values)}"
                     for key, values in plan["vary"].items())
    cases = runs[0].data["cases"] if runs else []
    devices = sorted({str(r.data.get("device", "?")) for r in runs})
    spec = f" (from the spec {doc.code(plan['spec'])})" if plan.get("spec") else ""
    items = [f"Base config: {doc.code(plan['config'])}{spec}", f"Varied: {vary}",
             "Fixed overrides: " + (", ".join(doc.code(o) for o in fixed_overrides(plan)) or "none"),
             f"Seeds: {plan['seeds']}; seed k gives every variant the same data split, patch stream and schedule",
             f"Finished runs: {len(runs)} of {len(plan['runs'])}",
             f"Held-out cases: {len(cases)} ({doc.literal(', '.join(cases))})",
             f"Baseline: {doc.literal(plan['baseline'])}", f"Device: {doc.literal(', '.join(devices)) or '–'}"]
    return [doc.Heading(f"Comparison: {doc.literal(', '.join(plan['vary']))}", 1), doc.Bullets(items)]


def _tables(groups: dict[str, list[RunResult]], summary: Summary, class_names: list[str],
            baseline: str) -> list[doc.Block]:
    blocks: list[doc.Block] = [
        doc.Heading("Summary"), doc.Paragraph(SUMMARY_TEXT), summary_table(summary),
        doc.Heading("Per class"),
        doc.Paragraph("Dice, HD95 (mm) and NSD of each foreground class: each run's mean over held-out cases, then "
                      "mean ± std over seeds."),
        class_table(groups, class_names),
        doc.Heading(f"Paired differences against {doc.literal(baseline)}")]
    if baseline not in groups or len(groups) < 2:
        return [*blocks, doc.Paragraph("Not available yet: the baseline and another variant need finished runs.")]
    text = (f"Paired by seed and case over the seeds both the variant and the baseline finished: each (seed, case) "
            "difference is the variant's score minus the baseline's, each averaged over foreground classes "
            "(positive Dice/NSD and negative HD95 differences favour the variant). Mean difference over those "
            f"cells; its {CONFIDENCE:.0%} interval is a two-way percentile bootstrap ({RESAMPLES} resamples, fixed "
            "seed) drawing the seeds with replacement and, independently, the cases with replacement, so it holds "
            "both the seed-to-seed (training) and the case-to-case variation; with one seed it covers the cases "
            "only, and says so. The two-sided Wilcoxon signed-rank p-value and better / worse are over the per-case "
            "differences averaged over seeds. With n cases the smallest possible p is 2/2^n (6 cases: 0.031), and "
            "several variants mean several tests: read p-values as a guide, not a verdict.")
    return [*blocks, doc.Paragraph(text), paired_table(paired_results(groups, baseline))]


def _column(summary: Summary, key: str, index: int) -> np.ndarray:
    return np.array([values[key][index] for values in summary.values()])


def _charts(groups: dict[str, list[RunResult]], summary: Summary, class_names: list[str]) -> list[doc.Block]:
    labels = list(groups)
    means, stds = dice_bars(groups, class_names)
    dice, dice_std = _column(summary, "mean_dice", 0), _column(summary, "mean_dice", 1)
    params = scatter_figure(labels, _column(summary, "parameters", 0) / 1e6, _column(summary, "parameters", 1) / 1e6,
                            dice, dice_std, "parameters (millions)")
    latency = scatter_figure(labels, _column(summary, "infer_seconds_per_volume", 0),
                             _column(summary, "infer_seconds_per_volume", 1), dice, dice_std,
                             "forward seconds per held-out volume")
    return [
        doc.Heading("Validation curves"),
        doc.Image("curves.png", curves_figure({label: [r.curve for r in found] for label, found in groups.items()}),
                  "validation Dice curves",
                  "Validation Dice (mean over foreground classes) during training: the line is the mean over seeds, "
                  "the band ± one standard deviation. Curves still rising at the end mean the schedule is too short "
                  "to rank the variants by their final quality."),
        doc.Heading("Dice per variant"),
        doc.Image("dice_bars.png", dice_bars_figure(labels, ["mean", *class_names], means, stds), "Dice bars",
                  "Held-out Dice per variant, overall and per class; error bars are one standard deviation over "
                  "seeds. Bars whose error bars overlap differ by no more than the seeds alone move them."),
        doc.Heading("Accuracy and cost"),
        doc.Image("dice_vs_params.png", params, "Dice against parameters",
                  "Held-out Dice against model size (error bars: one standard deviation over seeds). Up and to the "
                  "left is better: more accuracy for fewer weights."),
        doc.Image("dice_vs_latency.png", latency, "Dice against latency",
                  "Held-out Dice against the forward time of one held-out volume on this device. Up and to the left "
                  "is better."),
    ]


def _notes(runs: list[RunResult]) -> list[doc.Block]:
    methods = sorted({str(r.data.get("memory_method", "?")) for r in runs})
    return [doc.Heading("How the numbers were measured"), doc.Bullets([
        "Held-out cases are the dataset's test cases (never seen in training or validation), predicted with "
        "`segkit predict`'s pipeline into each run's `predictions/` and scored like `segkit evaluate` (MONAI Dice, "
        "HD95, NSD; classes absent from both are left out, a missed or extra class scores Dice 0).",
        "Forward seconds: `Predictor.logits` (sliding window over the preprocessed volume) after one untimed warm-up "
        "pass; reading, resampling back and writing are not included.",
        f"Peak memory: {'; '.join(methods)}. On a GPU it is the most memory held by tensors during one volume's "
        "forward pass (weights included); on a CPU, the growth of the process's resident memory during it (weights "
        "and input excluded). See docs/COMPARE.md.",
        "Checkerboard index: per axis the network convolves along, the Nyquist (period-2) bin's share of the "
        "logits' non-constant spectral energy, averaged over axes and held-out volumes (docs/COMPARE.md).",
    ])]


def _runs_table(runs: list[RunResult], out: Path) -> list[doc.Block]:
    rows = [[r.label, str(r.seed), f"{r.value('mean_dice'):.4f}", f"{r.value('train_seconds'):.0f}",
             str(r.folder.relative_to(out)) if r.folder.is_relative_to(out) else str(r.folder)] for r in runs]
    return [doc.Heading("Runs"), doc.Table(["variant", "seed", "Dice", "train s", "folder"], rows)]


def report_blocks(out: Path, plan: dict[str, Any], runs: list[RunResult]) -> tuple[list[doc.Block], str]:
    """Every section of the report, and the summary CSV text."""
    groups = by_variant([v["label"] for v in plan["variants"]], runs)
    if not runs:
        return [*_setup(plan, runs), doc.Paragraph("No run has finished yet.")], summary_csv({})
    class_names, summary = runs[0].data["classes"], summarise(groups)
    blocks = [*_setup(plan, runs), *_tables(groups, summary, class_names, plan["baseline"]),
              *_charts(groups, summary, class_names), *qualitative_blocks(groups, plan["baseline"]),
              *artefact_blocks(groups, plan["baseline"]), *_notes(runs), *_runs_table(runs, out)]
    return blocks, summary_csv(summary)


def write_report(out: Path, plan: dict[str, Any], runs: list[RunResult]) -> ReportFiles:
    """Write the report files (each atomically) and return their paths."""
    out = Path(out)
    blocks, csv_text = report_blocks(out, plan, runs)
    figures = []
    own_folder(out / doc.FIGURES)  # a planted link in its place is removed, never written through
    for block in blocks:
        if isinstance(block, doc.Image):
            figures.append(out / doc.FIGURES / block.name)
            atomic_write_bytes(figures[-1], block.png)
    files = ReportFiles(out / REPORT_MD, out / REPORT_HTML, out / SUMMARY_CSV, figures)
    atomic_write_text(files.markdown, doc.to_markdown(blocks))
    atomic_write_text(files.html, doc.to_html(blocks, f"segkit compare: {', '.join(plan['vary'])}"))
    atomic_write_text(files.csv, csv_text)
    return files
