"""Summary and paired statistics against hand computations on fixed numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from segkit.compare.results import RunResult
from segkit.compare.stats import BOOTSTRAP_SEED, RESAMPLES, bootstrap_ci, mean_std, paired_comparison, wilcoxon_p
from segkit.compare.tables import paired_results

DIFFERENCES = np.array([0.031, -0.012, 0.054, 0.020, 0.047, 0.003, 0.015, -0.006, 0.038])


def test_wilcoxon_is_scipys_two_sided_signed_rank_test() -> None:
    assert wilcoxon_p(DIFFERENCES) == stats.wilcoxon(DIFFERENCES).pvalue
    ranks = stats.rankdata(np.abs(DIFFERENCES))
    assert ranks[DIFFERENCES < 0].sum() == 5  # |-0.006| and |-0.012| rank 2 and 3 of 9
    exact = 2 * np.mean([sum(r for r, s in zip(range(1, 10), signs, strict=True) if s) <= 5
                         for signs in np.ndindex(*(2,) * 9)])  # exact null: all 512 sign patterns equally likely
    assert wilcoxon_p(DIFFERENCES) == pytest.approx(exact)
    assert math.isnan(wilcoxon_p(np.zeros(5)))


def test_bootstrap_interval_equals_a_hand_rolled_loop_with_the_same_seed() -> None:
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.integers(0, len(DIFFERENCES), size=(RESAMPLES, len(DIFFERENCES)))
    means = np.empty(RESAMPLES)
    for b in range(RESAMPLES):
        total = 0.0
        for i in picks[b]:
            total += DIFFERENCES[i]
        means[b] = total / len(DIFFERENCES)
    low, high = bootstrap_ci(DIFFERENCES)
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), abs=1e-12)
    assert low < DIFFERENCES.mean() < high
    assert bootstrap_ci(np.array([0.2, 0.2, 0.2])) == (0.2, 0.2)
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([0.1])))


def test_mean_and_sample_std_over_seeds() -> None:
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, math.sqrt(5 / 3)))
    mean, std = mean_std([0.7, float("nan")])
    assert mean == 0.7 and math.isnan(std)


def test_paired_comparison_by_hand() -> None:
    baseline = np.array([10.0, 12.0, np.nan, 8.0, 9.0])
    variant = np.array([9.0, 12.5, 7.0, 6.0, 9.0])  # HD95: lower is better
    result = paired_comparison(baseline, variant, higher_is_better=False)
    d = np.array([-1.0, 0.5, -2.0, 0.0])  # the NaN pair is left out
    assert result.n == 4 and result.mean_difference == pytest.approx(d.mean())
    assert (result.better, result.worse) == (2, 1)
    assert result.p_value == stats.wilcoxon(d).pvalue
    assert (result.ci_low, result.ci_high) == bootstrap_ci(d)


def _run(label: str, seed: int, dice: list[float]) -> RunResult:
    per_case = {metric: [[value] for value in dice] for metric in ("dice", "hd95_mm", "nsd")}
    return RunResult(label, seed, Path("."), {"cases": ["a", "b", "c"], "per_case": per_case}, ([], []))


def test_paired_statistics_use_only_the_seeds_both_sides_finished() -> None:
    """A variant whose seed 1 failed is paired with the baseline's seed 0 alone, not with its mean over seeds."""
    groups = {"base": [_run("base", 0, [0.5, 0.6, 0.7]), _run("base", 1, [0.9, 0.9, 0.9])],
              "other": [_run("other", 0, [0.6, 0.8, 0.7])]}
    paired = paired_results(groups, "base")[("other", "dice")]
    assert paired.n == 3 and paired.mean_difference == pytest.approx(0.1)
    assert (paired.better, paired.worse) == (2, 0)
