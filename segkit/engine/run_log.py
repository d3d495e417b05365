"""The training run's logs: ``metrics.jsonl``, ``curves.png`` and optional TensorBoard scalars.

Every line of ``metrics.jsonl`` is one strict-JSON record (NaN/inf written as
``null``) with ``"kind": "step"`` or ``"kind": "val"``.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from segkit.engine.curves import foreground_names, plot_curves
from segkit.errors import SegkitError
from segkit.io.atomic import atomic_write_text
from segkit.io.strict_json import json_safe

METRICS, CURVES, TENSORBOARD = "metrics.jsonl", "curves.png", "tensorboard"


def _tensorboard_writer(log_dir: Path, purge_step: int | None = None) -> Any | None:
    """A TensorBoard ``SummaryWriter``, or None when the optional ``tensorboard`` package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def _parse_lines(text: str) -> list[dict]:
    """Records from JSON-lines ``text``, skipping lines that do not parse to an object.

    A killed process can leave a partial last line; after a resume without
    truncation that partial line ends up in the middle, so any bad line is skipped.
    """
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_metrics(path: Path) -> list[dict]:
    """The records in a ``metrics.jsonl`` file (empty if it does not exist), skipping unparseable lines."""
    path = Path(path)
    if not path.exists():
        return []
    return _parse_lines(path.read_text(encoding="utf-8", errors="replace"))


def _ends_cleanly(path: Path) -> bool:
    """True if ``path`` is empty or ends with a newline."""
    with path.open("rb") as handle:
        if handle.seek(0, 2) == 0:
            return True
        handle.seek(-1, 2)
        return handle.read(1) == b"\n"


def _step_at_most(record: dict, step: int) -> bool:
    value = record.get("step")
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value <= step


class RunLog:
    """Append-only metrics log of one training run; every method is a no-op when ``enabled`` is False.

    Pass ``enabled=False`` on non-zero DDP ranks so only rank 0 writes.
    """

    def __init__(self, run_dir: Path, num_classes: int, enabled: bool = True,
                 class_names: list[str] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.num_classes = num_classes
        self.enabled = enabled
        self.class_names = class_names
        self.metrics_path = self.run_dir / METRICS
        self.curves_path = self.run_dir / CURVES
        self._file = None
        self._writer = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._open()
            self._writer = _tensorboard_writer(self.run_dir / TENSORBOARD)

    def _open(self) -> None:
        if self.metrics_path.is_symlink():  # appending would write wherever the link points
            raise SegkitError(f"{self.metrics_path}: a symbolic link where segkit keeps the run's log; it never "
                              "writes through a link — remove the link (or copy its file in its place) and run again")
        self._file = self.metrics_path.open("a", encoding="utf-8", buffering=1)
        # A process killed mid-write leaves a line without its newline; start ours on a fresh line.
        if not _ends_cleanly(self.metrics_path):
            self._file.write("\n")
            self._file.flush()

    def _write(self, kind: str, record: dict) -> None:
        line = {"kind": kind} | {k: v for k, v in record.items() if k != "kind"}
        self._file.write(json.dumps(json_safe(line), allow_nan=False) + "\n")
        self._file.flush()

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        value = json_safe(value)
        if self._writer is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            self._writer.add_scalar(tag, value, step)

    def log_step(self, record: dict) -> None:
        """Append a training-step record (``step``, ``epoch``, ``loss``, ``lr``, ``seconds``)."""
        if not self.enabled:
            return
        self._write("step", record)
        self._scalar("train/loss", record.get("loss"), record["step"])
        self._scalar("train/lr", record.get("lr"), record["step"])

    def log_validation(self, record: dict) -> None:
        """Append a validation record and refresh ``curves.png``.

        Keys: ``step``, ``epoch``, ``mean_dice``, ``dice_per_class`` (foreground classes,
        NaN allowed) and optionally ``train_loss``, ``hd95_per_class``, ``nsd_per_class``,
        ``mean_hd95``, ``mean_nsd``. Non-finite numbers are written as ``null``.
        """
        if not self.enabled:
            return
        self._write("val", record)
        step = record["step"]
        self._scalar("val/mean_dice", record.get("mean_dice"), step)
        for k, dice in enumerate(record.get("dice_per_class") or [], start=1):
            self._scalar(f"val/dice_class_{k}", dice, step)
        self._scalar("val/mean_hd95", record.get("mean_hd95"), step)
        self._scalar("val/mean_nsd", record.get("mean_nsd"), step)
        if self._writer is not None:
            self._writer.flush()
        self.refresh_curves()

    def refresh_curves(self, records: list[dict] | None = None) -> None:
        """Redraw ``curves.png`` from ``records`` (default: re-read ``metrics.jsonl``)."""
        if not self.enabled:
            return
        records = read_metrics(self.metrics_path) if records is None else records
        try:
            plot_curves(records, self.curves_path, self.class_names)
        except Exception as exc:  # a broken plot must not end a long training run
            warnings.warn(f"could not draw {self.curves_path}: {exc}", RuntimeWarning, stacklevel=2)

    def truncate_after(self, step: int) -> None:
        """On resume: keep only records with ``step`` ≤ ``step`` (atomically), then go on appending."""
        if not self.enabled:
            return
        self._file.close()
        kept = [r for r in read_metrics(self.metrics_path) if _step_at_most(r, step)]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))
        self._open()
        if self._writer is not None:  # drop TensorBoard events logged after ``step`` too
            self._writer.close()
            self._writer = _tensorboard_writer(self.run_dir / TENSORBOARD, purge_step=step + 1)
        if self.curves_path.exists():
            self.refresh_curves(kept)

    def close(self) -> None:
        """Close the metrics file and the TensorBoard writer (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, null, NaN, inf, not a number)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(value)
    number = _finite(value)
    return "–" if number is None else f"{number:.{digits}f}"


def _best_index(vals: list[dict]) -> int | None:
    """Index of the highest finite ``mean_dice`` (the earliest on ties), or None."""
    best = None
    for i, record in enumerate(vals):
        dice = _finite(record.get("mean_dice"))
        if dice is not None and (best is None or dice > best[1]):
            best = (i, dice)
    return None if best is None else best[0]


def summary_table(history: list[dict], class_names: list[str] | None = None) -> Table:
    """One row per validation (epochs without one are left out); the best (highest ``mean_dice``, earliest
    on ties) is bold with ★. Compact enough for an 80-column terminal with a few classes.

    ``history`` may be all of ``metrics.jsonl``: records of another ``kind`` are ignored.
    """
    vals = [r for r in history if r.get("kind", "val") == "val" and "mean_dice" in r]
    count = max((len(r.get("dice_per_class") or []) for r in vals), default=0)
    table = Table(title="Validation (Dice; HD95 in mm; NSD)", box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ["", "epoch", "step", "loss", "Dice", *foreground_names(class_names, count), "HD95", "NSD"]:
        table.add_column(header, justify="right", no_wrap=True)
    best = _best_index(vals)
    for i, r in enumerate(vals):
        per_class = list(r.get("dice_per_class") or [])
        per_class += [None] * (count - len(per_class))
        cells = [*map(_fmt, [r.get("epoch"), r.get("step"), r.get("train_loss"), r.get("mean_dice"), *per_class]),
                 _fmt(r.get("mean_hd95"), 1), _fmt(r.get("mean_nsd"))]
        table.add_row("★" if i == best else "", *cells, style="bold" if i == best else None)
    return table
