"""A three-stage pipeline: reader threads → the device (calling thread) → writer threads.

While the device works on one case, readers decode and preprocess the next ones and writers
compress and write finished ones. Queues are bounded (at most ``readers + lookahead`` prepared
inputs and ``writers + lookahead`` results wait at any time), so memory stays bounded however many
cases there are. A failure in any stage marks that item failed and the pipeline goes on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


@dataclass
class Outcome(Generic[Item]):
    """What happened to one item: the written result or the error, with seconds per stage."""

    item: Item
    result: Any = None
    error: BaseException | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every stage succeeded."""
        return self.error is None


def _timed(stage: str, fn: Callable[[Any], Any], value: Any, seconds: dict[str, float]) -> Any:
    started = time.perf_counter()
    try:
        return fn(value)
    finally:
        seconds[stage] = time.perf_counter() - started


@dataclass(frozen=True)
class Stages:
    """The three stage functions: ``read(item)``, ``compute(read_result)``, ``write(item, compute_result)``."""

    read: Callable[[Any], Any]
    compute: Callable[[Any], Any]
    write: Callable[[Any, Any], Any]
    warm_up: Callable[[], None] | None = None  # device work to do while the first inputs are being read


def run_pipeline(items: Iterable[Item], stages: Stages, readers: int = 2, writers: int = 2,
                 lookahead: int = 1, expected: tuple[type[BaseException], ...] = (Exception,),
                 thread_setup: Callable[[], None] | None = None) -> Iterator[Outcome[Item]]:
    """Yield one :class:`Outcome` per item as its write finishes (roughly in input order): a write that finished
    is yielded after the next compute at the latest, so a caller can report each case while later ones run.

    Exceptions of the ``expected`` types fail the item; anything else (e.g. KeyboardInterrupt)
    stops the pipeline. ``thread_setup`` runs once in each reader and writer thread.
    """
    source = iter(items)
    with ThreadPoolExecutor(readers, thread_name_prefix="segkit-read", initializer=thread_setup) as read_pool, \
            ThreadPoolExecutor(writers, thread_name_prefix="segkit-write", initializer=thread_setup) as write_pool:
        reading: deque[tuple[Outcome, Future]] = deque()
        writing: deque[tuple[Outcome, Future]] = deque()

        def top_up() -> None:
            while len(reading) < readers + lookahead:
                item = next(source, _END)
                if item is _END:
                    return
                outcome = Outcome(item)
                reading.append((outcome, read_pool.submit(_timed, "read", stages.read, item, outcome.seconds)))

        top_up()
        if stages.warm_up is not None and reading:
            stages.warm_up()
        while reading:
            outcome, future = reading.popleft()
            top_up()
            try:
                loaded = future.result()
                computed = _timed("compute", stages.compute, loaded, outcome.seconds)
                del loaded
            except expected as exc:
                outcome.error = exc
                yield outcome
                continue
            writing.append((outcome, write_pool.submit(
                _timed, "write", lambda value, o=outcome: stages.write(o.item, value), computed, outcome.seconds)))
            # a finished write is reported at once (progress, and its manifest line before the next case's compute)
            while writing and (len(writing) > writers + lookahead or writing[0][1].done()):
                yield _finish(*writing.popleft(), expected)
        while writing:
            yield _finish(*writing.popleft(), expected)


_END = object()


def _finish(outcome: Outcome, future: Future, expected: tuple[type[BaseException], ...]) -> Outcome:
    try:
        outcome.result = future.result()
    except expected as exc:
        outcome.error = exc
    return outcome
