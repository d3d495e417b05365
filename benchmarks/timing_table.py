"""The table and JSON summary of round-robin timings, shared by the benchmarks that time contenders by name."""

from __future__ import annotations

import statistics

from rich.table import Table


def timing_table(title: str, seconds: dict[str, list[float]], base: str, ratio_label: str, invert: bool) -> Table:
    """Median and min–max seconds per contender, and its ratio to ``base``: time / base's time with ``invert``,
    base's time / time otherwise."""
    table = Table(title=title)
    for column in ("contender", "median s", "min–max s", ratio_label):
        table.add_column(column, justify="left" if column == "contender" else "right")
    base_median = statistics.median(seconds[base])
    for name, values in seconds.items():
        median = statistics.median(values)
        ratio = median / base_median if invert else base_median / median
        table.add_row(name, f"{median:.3f}", f"{min(values):.3f}–{max(values):.3f}", f"{ratio:.2f}")
    return table


def timing_summary(seconds: dict[str, list[float]]) -> dict:
    """Median, min, max and every run per contender, for the JSON output."""
    return {name: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
            for name, v in seconds.items()}
