"""Training curves: loss, learning rate and validation Dice in one PNG.

Uses ``Figure`` + ``FigureCanvasAgg`` objects rather than ``pyplot`` so no global
matplotlib state (backend, current figure) changes inside the training process.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from segkit.io.atomic import atomic_write_bytes

FIGSIZE = (16.0, 4.5)  # inches; wider than tall so three panels sit side by side
DPI = 100


def foreground_names(class_names: list[str] | None, count: int) -> list[str]:
    """Names for foreground classes ``1..count``.

    ``class_names`` may list every class (background first) or only the foreground
    ones; anything else falls back to ``class 1``, ``class 2``, ...
    """
    if class_names is not None:
        if len(class_names) == count + 1:
            return list(class_names[1:])
        if len(class_names) == count:
            return list(class_names)
    return [f"class {k}" for k in range(1, count + 1)]


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, null, NaN, inf)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) for records that have a finite ``key`` and ``step``."""
    xs, ys = [], []
    for record in records:
        step, value = _number(record.get("step")), _number(record.get(key))
        if step is not None and value is not None:
            xs.append(step)
            ys.append(value)
    return xs, ys


def _moving_average(xs: list[float], ys: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean over ~2% of the points, aligned with each window's last step."""
    window = max(1, round(0.02 * len(ys)))
    kernel = np.ones(window) / window
    return np.asarray(xs[window - 1:]), np.convolve(np.asarray(ys), kernel, mode="valid")


def _placeholder(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


def _plot_loss(ax: Axes, steps: list[dict]) -> None:
    xs, ys = _series(steps, "loss")
    if xs:
        ax.plot(xs, ys, linewidth=0.6, alpha=0.5, color="tab:blue", label="loss")
        ma_x, ma_y = _moving_average(xs, ys)
        ax.plot(ma_x, ma_y, linewidth=2.0, color="tab:blue", label="moving average")
        ax.legend(loc="upper right")
    else:
        _placeholder(ax, "no training steps yet")
    ax.set(title="Training loss", xlabel="step", ylabel="loss")


def _plot_lr(ax: Axes, steps: list[dict]) -> None:
    xs, ys = _series(steps, "lr")
    if xs:
        ax.plot(xs, ys, linewidth=1.2, color="tab:orange", label="learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.legend(loc="upper right")
    else:
        _placeholder(ax, "no training steps yet")
    ax.set(title="Learning rate", xlabel="step", ylabel="learning rate")


def _class_series(vals: list[dict], index: int) -> tuple[list[float], list[float]]:
    """(steps, Dice) of foreground class ``index + 1``, skipping missing values."""
    xs, ys = [], []
    for record in vals:
        per_class = record.get("dice_per_class") or []
        step = _number(record.get("step"))
        value = _number(per_class[index]) if index < len(per_class) else None
        if step is not None and value is not None:
            xs.append(step)
            ys.append(value)
    return xs, ys


def _plot_dice(ax: Axes, vals: list[dict], class_names: list[str] | None) -> None:
    count = max((len(r.get("dice_per_class") or []) for r in vals), default=0)
    for index, name in enumerate(foreground_names(class_names, count)):
        xs, ys = _class_series(vals, index)
        if xs:
            ax.plot(xs, ys, marker="o", markersize=4, linewidth=1.0, label=name)
    xs, ys = _series(vals, "mean_dice")
    if xs:
        ax.plot(xs, ys, marker="s", markersize=5, linewidth=2.2, color="black", label="mean")
    if ax.lines:
        ax.set_ylim(-0.02, 1.02)
        ax.legend(loc="lower right", fontsize="small", ncol=1 + count // 8)
    else:
        _placeholder(ax, "no validation yet")
    ax.set(title="Validation Dice", xlabel="step", ylabel="Dice")


def render_curves(records: list[dict], class_names: list[str] | None = None) -> bytes:
    """The curves figure for ``records`` (``kind`` ``step`` / ``val``) as PNG bytes."""
    steps = [r for r in records if r.get("kind") == "step"]
    vals = [r for r in records if r.get("kind") == "val"]
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, lr_ax, dice_ax = fig.subplots(1, 3)
    _plot_loss(loss_ax, steps)
    _plot_lr(lr_ax, steps)
    _plot_dice(dice_ax, vals, class_names)
    for ax in (loss_ax, lr_ax, dice_ax):
        ax.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def plot_curves(records: list[dict], out_path: Path, class_names: list[str] | None = None) -> None:
    """Render the training curves for ``records`` and write them atomically to ``out_path`` (PNG)."""
    atomic_write_bytes(Path(out_path), render_curves(records, class_names))
