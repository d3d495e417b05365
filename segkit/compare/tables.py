"""The report's tables: summary (mean ± std over seeds), Dice per class, paired differences; ``summary.csv``.

Every number comes from the runs' ``result.json`` (and ``best_val_dice`` from ``metrics.jsonl``); the tables
only aggregate and format.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from segkit.compare.document import Table
from segkit.compare.results import CASE_METRICS, METRICS, RunResult, per_case
from segkit.compare.stats import Paired, mean_std, paired_comparison

Summary = dict[str, dict[str, tuple[float, float, int]]]  # label → metric key → (mean, std, seeds)


def by_variant(labels: list[str], runs: list[RunResult]) -> dict[str, list[RunResult]]:
    """The finished runs of each variant (variants without any are left out), in plan order."""
    grouped = {label: [r for r in runs if r.label == label] for label in labels}
    return {label: found for label, found in grouped.items() if found}


def summarise(groups: dict[str, list[RunResult]]) -> Summary:
    """Mean and standard deviation over seeds of every summary metric, per variant."""
    return {label: {m.key: (*mean_std([r.value(m.key) for r in found]), len(found)) for m in METRICS}
            for label, found in groups.items()}


def mean_pm_std(mean: float, std: float, digits: int, scale: float = 1.0, significant: bool = False) -> str:
    """``0.812 ± 0.004`` (``digits`` decimals, or significant digits: ``3.1e-05 ± 2.2e-06``); ``0.812`` alone with
    one seed; ``–`` without a value."""
    if math.isnan(mean):
        return "–"
    style = "g" if significant else "f"
    text = f"{mean * scale:.{digits}{style}}"
    return text if math.isnan(std) else f"{text} ± {std * scale:.{digits}{style}}"


def summary_table(summary: Summary) -> Table:
    """One row per variant: seeds and every metric of :data:`METRICS` as mean ± std."""
    header = ["variant", "seeds", *(m.title for m in METRICS)]
    rows = [[label, str(next(iter(values.values()))[2]),
             *(mean_pm_std(values[m.key][0], values[m.key][1], m.digits, m.scale, m.significant) for m in METRICS)]
            for label, values in summary.items()]
    return Table(header, rows)


def class_table(groups: dict[str, list[RunResult]], class_names: list[str]) -> Table:
    """Dice, HD95 and NSD per foreground class (mean over held-out cases in each run, then mean ± std over seeds)."""
    header = ["variant", *(f"{name} {title}" for _, title, _ in CASE_METRICS for name in class_names)]
    rows = []
    for label, found in groups.items():
        cells = []
        for metric, _, _ in CASE_METRICS:
            per_run = np.array([class_means(r, metric, len(class_names)) for r in found])
            digits = 2 if metric == "hd95_mm" else 3
            cells += [mean_pm_std(*mean_std(per_run[:, k]), digits) for k in range(len(class_names))]
        rows.append([label, *cells])
    return Table(header, rows)


def class_means(run: RunResult, metric: str, classes: int) -> np.ndarray:
    """Per foreground class, the run's mean of a per-case metric over the held-out cases (NaN ignored)."""
    values = np.asarray(run.data["per_case"][metric], dtype=np.float64).reshape(-1, classes)
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(values).sum(axis=0)
        return np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), np.nan)


def dice_bars(groups: dict[str, list[RunResult]], class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over seeds of each variant's overall and per-class held-out Dice: arrays (variants, 1 + classes)."""
    means, stds = [], []
    for found in groups.values():
        per_run = np.array([[r.value("mean_dice"), *class_means(r, "dice", len(class_names))] for r in found])
        stats = [mean_std(per_run[:, k]) for k in range(per_run.shape[1])]
        means.append([s[0] for s in stats])
        stds.append([s[1] for s in stats])
    return np.array(means), np.array(stds)


def _seed_case_table(runs: list[RunResult], seeds: list[int], cases: list[str], metric: str) -> np.ndarray:
    """(seeds, cases): each run's per-case mean over foreground classes, NaN where a run lacks the case."""
    by_seed = {r.seed: per_case(r, metric) for r in runs if r.seed in seeds}
    return np.array([[by_seed[s].get(c, math.nan) for c in cases] for s in seeds], dtype=np.float64)


def paired_results(groups: dict[str, list[RunResult]], baseline: str) -> dict[tuple[str, str], Paired]:
    """(variant, case metric) → paired statistics against ``baseline``, paired by seed and case over the seeds that
    both finished (a seed only one side finished would pair unlike runs) and the cases both scored."""
    out = {}
    for metric, _, higher in CASE_METRICS:
        for label, found in groups.items():
            if label == baseline:
                continue
            seeds = sorted({r.seed for r in found} & {r.seed for r in groups[baseline]})
            cases = list(dict.fromkeys(c for r in groups[baseline] + found if r.seed in seeds for c in r.data["cases"]))
            out[(label, metric)] = paired_comparison(_seed_case_table(groups[baseline], seeds, cases, metric),
                                                     _seed_case_table(found, seeds, cases, metric), higher)
    return out


def _signed(value: float, digits: int) -> str:
    return "–" if math.isnan(value) else f"{value:+.{digits}f}"


CI_TWO_WAY = "95% CI (bootstrap over seeds × cases)"
CI_CASES_ONLY = "95% CI (bootstrap over cases only: one seed)"
WILCOXON = "Wilcoxon p (per-case means over seeds)"


def paired_table(paired: dict[tuple[str, str], Paired]) -> Table:
    """Mean difference with its two-way bootstrap 95% CI (seeds × cases; cases only for a one-seed row, marked so),
    Wilcoxon p and cases better / worse than the baseline (both over per-case means over seeds)."""
    titles = {metric: title for metric, title, _ in CASE_METRICS}
    several = any(p.seeds > 1 for p in paired.values())
    rows = []
    for (label, metric), p in paired.items():
        digits = 2 if metric == "hd95_mm" else 4
        ci = "–" if math.isnan(p.ci_low) else f"[{_signed(p.ci_low, digits)}, {_signed(p.ci_high, digits)}]"
        if several and p.seeds == 1 and ci != "–":
            ci += " (cases only: one seed)"
        rows.append([label, titles[metric], str(p.seeds), str(p.n), _signed(p.mean_difference, digits), ci,
                     "–" if math.isnan(p.p_value) else f"{p.p_value:.3g}", f"{p.better} / {p.worse}"])
    return Table(["variant", "metric", "seeds", "cases", "mean difference", CI_TWO_WAY if several else CI_CASES_ONLY,
                  WILCOXON, "better / worse"], rows)


def summary_csv(summary: Summary) -> str:
    """``variant,metric,mean,std,seeds`` with full precision (unscaled), for other tools."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["variant", "metric", "mean", "std", "seeds"])
    for label, values in summary.items():
        for key, (mean, std, seeds) in values.items():
            writer.writerow([label, key, "" if math.isnan(mean) else repr(mean), "" if math.isnan(std) else repr(std),
                             seeds])
    return out.getvalue()
