"""The report's charts as PNG bytes: validation curves, Dice bars, Dice against a cost.

``matplotlib.figure.Figure`` with the Agg canvas only (no ``pyplot``, no global state). Each variant keeps
one colour across every figure (:func:`variant_colour`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110


def variant_colour(index: int) -> tuple[float, float, float]:
    """The colour of the ``index``-th variant (tab10, cycling)."""
    return tuple(colormaps["tab10"].colors[index % 10])


def to_png(figure: Figure) -> bytes:
    """Render ``figure`` with Agg into PNG bytes."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _common_curve(curves: Sequence[tuple[list[float], list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Steps validated in every seed's run and the Dice values there, shape (seeds, steps)."""
    steps = sorted(set.intersection(*(set(s) for s, _ in curves))) if curves else []
    values = np.array([[dict(zip(s, d, strict=True))[x] for x in steps] for s, d in curves], dtype=np.float64)
    return np.asarray(steps, dtype=np.float64), values.reshape(len(curves), len(steps))


def curves_figure(curves: dict[str, list[tuple[list[float], list[float]]]]) -> bytes:
    """Validation mean foreground Dice per variant: the mean over seeds and a band of ± one standard deviation."""
    figure = Figure(figsize=(7.0, 4.0))
    ax = figure.add_subplot()
    for i, (label, runs) in enumerate(curves.items()):
        steps, values = _common_curve(runs)
        if len(steps) == 0:
            continue
        mean = values.mean(axis=0)
        ax.plot(steps, mean, marker="o", markersize=3, color=variant_colour(i), label=f"{label} (n={len(runs)})")
        if len(runs) > 1:
            std = values.std(axis=0, ddof=1)
            ax.fill_between(steps, mean - std, mean + std, color=variant_colour(i), alpha=0.18, linewidth=0)
    ax.set(xlabel="training step", ylabel="validation Dice (mean foreground)", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return to_png(figure)


def dice_bars_figure(labels: list[str], groups: list[str], means: np.ndarray, stds: np.ndarray) -> bytes:
    """Grouped bars: one group per entry of ``groups`` (mean, then each class), one bar per variant, error bars
    of one standard deviation over seeds; ``means`` and ``stds`` have shape (variants, groups)."""
    figure = Figure(figsize=(max(6.0, 1.4 * len(groups) + 2.0), 4.0))
    ax = figure.add_subplot()
    width = 0.8 / len(labels)
    x = np.arange(len(groups))
    for i, label in enumerate(labels):
        errors = np.nan_to_num(stds[i], nan=0.0)
        ax.bar(x + (i - (len(labels) - 1) / 2) * width, means[i], width, yerr=errors, capsize=3,
               color=variant_colour(i), label=label, error_kw={"elinewidth": 1})
    ax.set_xticks(x, groups)
    ax.set(ylabel="Dice on held-out cases", ylim=(0, 1.05))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncols=min(len(labels), 4), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    return to_png(figure)


def scatter_figure(labels: list[str], x: np.ndarray, x_err: np.ndarray, y: np.ndarray, y_err: np.ndarray,
                   xlabel: str) -> bytes:
    """Dice (y) against a cost (x) per variant, with error bars of one standard deviation over seeds."""
    figure = Figure(figsize=(5.5, 4.0))
    ax = figure.add_subplot()
    for i, label in enumerate(labels):
        ax.errorbar(x[i], y[i], xerr=np.nan_to_num(x_err[i]), yerr=np.nan_to_num(y_err[i]), fmt="o", capsize=3,
                    color=variant_colour(i), label=label, markersize=7)
        ax.annotate(label, (x[i], y[i]), textcoords="offset points", xytext=(6, 6), fontsize="small")
    ax.set(xlabel=xlabel, ylabel="Dice on held-out cases (mean foreground)")
    ax.grid(alpha=0.3)
    ax.margins(x=0.25, y=0.25)
    return to_png(figure)
