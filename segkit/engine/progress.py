"""The training progress bar: epoch, step, loss, learning rate, it/s, ETA and the last validation Dice."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text


class _Rate(ProgressColumn):
    """Optimiser steps per second over rich's recent window."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.2f} it/s" if task.speed else "– it/s", style="progress.data.speed")


def training_progress(console: Console, enabled: bool = True) -> Progress:
    """A rich progress bar whose task carries the fields ``epoch``, ``loss``, ``lr`` and ``dice``."""
    columns = (
        TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("lr {task.fields[lr]:.2e}"), _Rate(),
        TextColumn("ETA"), TimeRemainingColumn(), TextColumn("dice {task.fields[dice]}"),
    )
    return Progress(*columns, console=console, transient=False, disable=not enabled)
