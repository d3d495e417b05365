"""Summary and paired statistics against hand computations on fixed numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from segkit.compare.results import RunResult
from segkit.compare.stats import (
    BOOTSTRAP_SEED,
    RESAMPLES,
    mean_std,
    paired_comparison,
    two_way_bootstrap_ci,
    wilcoxon_p,
)
from segkit.compare.tables import CI_CASES_ONLY, CI_TWO_WAY, paired_results, paired_table

DIFFERENCES = np.array([0.031, -0.012, 0.054, 0.020, 0.047, 0.003, 0.015, -0.006, 0.038])


def test_wilcoxon_is_scipys_two_sided_signed_rank_test() -> None:
    assert wilcoxon_p(DIFFERENCES) == stats.wilcoxon(DIFFERENCES).pvalue
    ranks = stats.rankdata(np.abs(DIFFERENCES))
    assert ranks[DIFFERENCES < 0].sum() == 5  # |-0.006| and |-0.012| rank 2 and 3 of 9
    exact = 2 * np.mean([sum(r for r, s in zip(range(1, 10), signs, strict=True) if s) <= 5
                         for signs in np.ndindex(*(2,) * 9)])  # exact null: all 512 sign patterns equally likely
    assert wilcoxon_p(DIFFERENCES) == pytest.approx(exact)
    assert math.isnan(wilcoxon_p(np.zeros(5)))


def test_one_seed_bootstrap_equals_a_hand_rolled_loop_over_cases() -> None:
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    rng.multinomial(1, [1.0], size=RESAMPLES)  # the seed draw comes first (always the one seed)
    counts = rng.multinomial(len(DIFFERENCES), np.full(len(DIFFERENCES), 1 / len(DIFFERENCES)), size=RESAMPLES)
    means = np.array([sum(DIFFERENCES[i] * k for i, k in enumerate(row)) / len(DIFFERENCES) for row in counts])
    low, high = two_way_bootstrap_ci(DIFFERENCES)
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), abs=1e-12)
    assert low < DIFFERENCES.mean() < high
    assert two_way_bootstrap_ci(np.array([0.2, 0.2, 0.2])) == (0.2, 0.2)
    assert all(math.isnan(v) for v in two_way_bootstrap_ci(np.array([0.1])))


def test_two_way_bootstrap_equals_a_hand_rolled_loop_over_seeds_and_cases() -> None:
    table = np.array([[0.03, -0.01, 0.05, np.nan], [0.01, 0.02, -0.02, 0.04], [0.00, 0.06, 0.01, 0.02]])
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    seeds = rng.multinomial(3, np.full(3, 1 / 3), size=RESAMPLES)
    cases = rng.multinomial(4, np.full(4, 1 / 4), size=RESAMPLES)
    means = []
    for b in range(RESAMPLES):
        cells = [table[s, c] for s in range(3) for _ in range(seeds[b, s])
                 for c in range(4) for _ in range(cases[b, c])]
        cells = [v for v in cells if np.isfinite(v)]  # a NaN cell (case absent in both) is left out
        means.append(sum(cells) / len(cells))
    assert two_way_bootstrap_ci(table) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), abs=1e-12)


SEED_FLIP = np.array([[0.010, 0.012, 0.009, 0.011, 0.010, 0.013],  # seed 0: the variant wins every case
                      [-0.011, -0.009, -0.012, -0.010, -0.013, -0.010],  # seed 1: it loses every case
                      [0.009, 0.011, 0.010, 0.012, 0.008, 0.010]])  # seed 2: wins again


def test_an_effect_that_flips_sign_between_seeds_gives_an_interval_holding_zero() -> None:
    """Consistent within each seed, so a bootstrap over cases alone excludes 0; over seeds too it must not."""
    base = np.full_like(SEED_FLIP, 0.8)
    result = paired_comparison(base, base + SEED_FLIP, higher_is_better=True)
    assert result.seeds == 3 and result.n == 6
    assert result.ci_low < 0 < result.ci_high
    per_case = SEED_FLIP.mean(axis=0)  # what the old interval resampled: every case favours the variant
    assert np.all(per_case > 0) and two_way_bootstrap_ci(per_case)[0] > 0
    agreeing = np.abs(SEED_FLIP)  # every seed agrees
    result = paired_comparison(base, base + agreeing, higher_is_better=True)
    assert 0 < result.ci_low < agreeing.mean() < result.ci_high
    first, again = two_way_bootstrap_ci(SEED_FLIP), two_way_bootstrap_ci(SEED_FLIP.copy())
    assert first == again != two_way_bootstrap_ci(SEED_FLIP, seed=BOOTSTRAP_SEED + 1)  # fixed RNG seed: reproducible


def test_the_table_names_the_interval_and_marks_one_seed_rows_as_cases_only() -> None:
    base = np.full_like(SEED_FLIP, 0.8)
    two = paired_comparison(base, base + SEED_FLIP, True)
    one = paired_comparison(base[0], base[0] + SEED_FLIP[0], True)
    table = paired_table({("a", "dice"): two, ("b", "dice"): one})
    assert table.header[5] == CI_TWO_WAY and "Wilcoxon p (per-case means over seeds)" in table.header
    assert table.rows[0][2:4] == ["3", "6"] and "cases only" not in table.rows[0][5]
    assert table.rows[1][2] == "1" and table.rows[1][5].endswith("(cases only: one seed)")
    assert paired_table({("b", "dice"): one}).header[5] == CI_CASES_ONLY


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
    assert (result.ci_low, result.ci_high) == two_way_bootstrap_ci(d)


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
