"""Summaries over seeds and paired per-case comparisons against the baseline.

- ``mean_std``: mean and sample standard deviation (``ddof=1``) over seeds.
- ``bootstrap_ci``: percentile bootstrap confidence interval of the mean paired difference, resampling cases
  with replacement (``scipy.stats.bootstrap``, ``method="percentile"``, a fixed seed so reports reproduce).
- ``wilcoxon_p``: two-sided Wilcoxon signed-rank test of the paired differences (``scipy.stats.wilcoxon``,
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


def bootstrap_ci(differences: np.ndarray, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``differences``; NaN with fewer than two values, the value itself
    when all are equal (every resample has the same mean)."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) < 2:
        return float("nan"), float("nan")
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    result = stats.bootstrap((d,), np.mean, n_resamples=resamples, confidence_level=confidence,
                             method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


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
    """A variant against the baseline on one metric, over the cases both have a score for."""

    n: int
    mean_difference: float  # variant − baseline
    ci_low: float
    ci_high: float
    p_value: float
    better: int  # cases where the variant is better (by the metric's direction)
    worse: int


def paired_comparison(baseline: np.ndarray, variant: np.ndarray, higher_is_better: bool) -> Paired:
    """Paired statistics of ``variant − baseline`` (arrays aligned by case; NaN pairs left out)."""
    base, other = np.asarray(baseline, dtype=np.float64), np.asarray(variant, dtype=np.float64)
    keep = np.isfinite(base) & np.isfinite(other)
    d = other[keep] - base[keep]
    if len(d) == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, 0, 0)
    low, high = bootstrap_ci(d)
    sign = 1.0 if higher_is_better else -1.0
    return Paired(len(d), float(d.mean()), low, high, wilcoxon_p(d), int(np.sum(sign * d > 0)),
                  int(np.sum(sign * d < 0)))
