"""Summaries over seeds and paired comparisons against the baseline.

- ``mean_std``: mean and sample standard deviation (``ddof=1``) over seeds.
- ``two_way_bootstrap_ci``: percentile bootstrap interval of the mean paired difference over a (seeds × cases)
  table, resampling the seeds with replacement and, independently, the cases with replacement (one draw of cases
  for every drawn seed, since every seed scored the same cases), so that both the seed-to-seed (training) and the
  case-to-case variation are in the interval; a fixed RNG seed makes reports reproduce.
- ``wilcoxon_p``: two-sided Wilcoxon signed-rank test of the per-case differences (``scipy.stats.wilcoxon``,
  zero differences dropped as in Wilcoxon's original method, exact distribution for small samples).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def mean_std(values: np.ndarray | list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of the finite values; std is NaN with fewer than two."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    return float(finite.mean()), float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")


def _resample_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each resample of ``n`` draws with replacement: (resamples, n)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def two_way_bootstrap_ci(differences: np.ndarray, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                         confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the mean of a (seeds, cases) table of paired differences (NaN cells left out), over
    ``resamples`` draws of the seeds with replacement and, independently, of the cases with replacement; each
    resample's statistic is the mean over the drawn (seed, case) cells. With one seed only the cases vary.
    NaN with fewer than two finite cells; the value itself when all finite cells are equal."""
    d = np.atleast_2d(np.asarray(differences, dtype=np.float64))
    finite = np.isfinite(d)
    if finite.sum() < 2:
        return float("nan"), float("nan")
    if np.all(d[finite] == d[finite][0]):
        return float(d[finite][0]), float(d[finite][0])
    rng = np.random.default_rng(seed)
    seeds, cases = _resample_counts(rng, d.shape[0], resamples), _resample_counts(rng, d.shape[1], resamples)
    total = np.einsum("bs,sc,bc->b", seeds, np.where(finite, d, 0.0), cases)
    count = np.einsum("bs,sc,bc->b", seeds, finite.astype(np.float64), cases)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = total / count  # a resample that drew only NaN cells has no mean and is left out
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(means[np.isfinite(means)], [tail, 100.0 - tail])
    return float(low), float(high)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; NaN when no difference is non-zero."""
    d = np.asarray(differences, dtype=np.float64)
    if not np.any(d != 0):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sample size too small for normal approximation"
        return float(stats.wilcoxon(d).pvalue)


@dataclass(frozen=True)
class Paired:
    """A variant against the baseline on one metric, over the seeds both finished and the cases both scored."""

    n: int  # cases
    mean_difference: float  # variant − baseline, mean over the (seed, case) cells
    ci_low: float
    ci_high: float
    p_value: float  # Wilcoxon, over the per-case differences averaged over seeds
    better: int  # cases where the variant is better (by the metric's direction), per-case means over seeds
    worse: int
    seeds: int = 1


def paired_comparison(baseline: np.ndarray, variant: np.ndarray, higher_is_better: bool) -> Paired:
    """Paired statistics of ``variant − baseline``: arrays (seeds, cases) aligned by seed and case, or (cases,) for
    one seed; a cell where either side is NaN is left out, a case with no finite cell is left out."""
    base = np.atleast_2d(np.asarray(baseline, dtype=np.float64))
    other = np.atleast_2d(np.asarray(variant, dtype=np.float64))
    d = np.where(np.isfinite(base) & np.isfinite(other), other - base, np.nan)
    keep = np.isfinite(d).any(axis=0)
    d = d[:, keep]
    if d.shape[1] == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, 0, 0, d.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_case = np.nanmean(d, axis=0)
    low, high = two_way_bootstrap_ci(d)
    sign = 1.0 if higher_is_better else -1.0
    return Paired(d.shape[1], float(np.nanmean(d)), low, high, wilcoxon_p(per_case),
                  int(np.sum(sign * per_case > 0)), int(np.sum(sign * per_case < 0)), d.shape[0])
