"""``segkit data convert``: a dataset segkit reads, written case by case as an nnU-Net v2 raw dataset (NIfTI).

Orchestration only: reading, checking and writing a case live in :mod:`segkit.data.convert`, the dataset.json in
:mod:`segkit.data.convert_manifest`. Cases are converted by ``workers`` threads, each holding one case at a time;
a bad case is reported in one line and skipped, and dataset.json is written last, once every case is done.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from segkit.data.cases import DatasetIndex
from segkit.data.convert import CaseOutcome, ConvertPlan, check_output, convert_case, expected_channels
from segkit.data.convert_manifest import declared_labels, named_labels, nnunet_manifest, source_manifest
from segkit.data.index import detect_layout, load_dataset
from segkit.errors import DataError
from segkit.io.atomic import atomic_write_text, own_folder


@dataclass(frozen=True)
class ConvertSummary:
    """What a conversion did: every case's outcome, and whether dataset.json was written (not without a training
    case)."""

    output: Path
    outcomes: list[CaseOutcome]
    manifest_written: bool

    @property
    def failed(self) -> list[CaseOutcome]:
        """The cases that were skipped."""
        return [outcome for outcome in self.outcomes if outcome.error is not None]

    @property
    def ok(self) -> bool:
        """Every case converted and the dataset complete."""
        return self.manifest_written and not self.failed


def _prepare(output: Path, index: DatasetIndex) -> None:
    folders = ["imagesTr", "labelsTr"]
    if index.test:
        folders.append("imagesTs")
    if any(case.label is not None for case in index.test):
        folders.append("labelsTs")  # the held-out references, where the source has them
    try:
        for folder in folders:
            own_folder(output / folder)
    except OSError as exc:
        raise DataError(f"--output {output}: cannot create folders there ({exc.strerror or exc})") from None


def _convert_all(index: DatasetIndex, plan: ConvertPlan, workers: int, console: Console,
                 on_failure: Callable[[str], None]) -> list[CaseOutcome]:
    jobs = [(case, "Tr") for case in index.training] + [(case, "Ts") for case in index.test]
    pool = ThreadPoolExecutor(workers, thread_name_prefix="convert")
    outcomes = []
    try:  # a thread reads a case only when it starts it, so at most ``workers`` cases are in memory
        for outcome in pool.map(lambda job: convert_case(*job, plan), jobs):
            outcomes.append(outcome)
            if outcome.error is not None:
                on_failure(f"{outcome.error} (case {outcome.case_id} skipped)")
            else:
                split = "training" if outcome.split == "Tr" else "test"
                console.print(escape(f"converted {outcome.case_id} ({split})"), soft_wrap=True)
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C the cases not yet started are not started
    return outcomes


def _write_manifest(source: Path, layout: str, plan: ConvertPlan, outcomes: list[CaseOutcome]) -> bool:
    """dataset.json, when at least one training case was converted; whether it was written."""
    converted = [outcome for outcome in outcomes if outcome.error is None]
    num_training = sum(outcome.split == "Tr" for outcome in converted)
    if not num_training:
        return False
    manifest = source_manifest(source)
    labels = declared_labels(layout, manifest, source)
    if labels is None:  # no label set declared: name every value up to the largest one found
        top = max((outcome.label_max or 0 for outcome in converted), default=0)
        labels = named_labels({value: f"label_{value}" for value in range(1, top + 1)})
    text = json.dumps(nnunet_manifest(layout, manifest, plan.channels, labels, num_training), indent=2) + "\n"
    atomic_write_text(plan.output / "dataset.json", text)
    return True


def _summary(summary: ConvertSummary) -> str:
    done = [outcome for outcome in summary.outcomes if outcome.error is None]
    training = sum(outcome.split == "Tr" for outcome in done)
    counts = (f"converted {len(done)} of {len(summary.outcomes)} case(s) ({training} training, "
              f"{len(done) - training} test), {len(summary.failed)} failed")
    if not summary.manifest_written:
        return f"{counts} — no training case converted, so {summary.output} holds no dataset.json and is no dataset"
    return f"{counts} — nnU-Net v2 raw dataset in {summary.output} (check it with: segkit data check {summary.output})"


def run_convert(source: Path, output: Path, layout: str | None = None, workers: int = 2,
                console: Console | None = None, on_failure: Callable[[str], None] | None = None) -> ConvertSummary:
    """Convert the dataset at ``source`` (``layout`` msd, nnunet or folder; default detected) into an nnU-Net v2
    raw dataset in ``output``, which must be new or empty and outside ``source``. Each skipped case is passed to
    ``on_failure`` as one line (default: printed); the summary line is printed last."""
    console = console or Console()
    on_failure = on_failure or (lambda message: console.print(escape(message), soft_wrap=True))
    check_output(source, output)
    layout = layout or detect_layout(source)
    index = load_dataset(source, layout, given_as="--input")
    labels = declared_labels(layout, source_manifest(source), source)
    plan = ConvertPlan(output, expected_channels(index, layout), len(labels) if labels is not None else None)
    _prepare(output, index)
    outcomes = _convert_all(index, plan, workers, console, on_failure)
    summary = ConvertSummary(output, outcomes, _write_manifest(source, layout, plan, outcomes))
    console.print(escape(_summary(summary)), soft_wrap=True)
    return summary
