"""The reader → device → writer pipeline: every item once, failures isolated, memory bounded."""

from __future__ import annotations

import threading
import time

import pytest

from segkit.errors import DataError
from segkit.inference.pipeline import Stages, run_pipeline


class Tracker:
    """Counts items held between the end of reading and the end of writing."""

    def __init__(self) -> None:
        self.lock, self.held, self.peak, self.written = threading.Lock(), 0, 0, []

    def read(self, item: int) -> int:
        if item == 3:
            raise DataError(f"case {item}: unreadable")
        time.sleep(0.001 * (item % 3))  # uneven reading times
        with self.lock:
            self.held += 1
            self.peak = max(self.peak, self.held)
        return item * 10

    def write(self, item: int, value: int) -> int:
        if item == 5:
            raise OSError(28, "No space left on device")
        with self.lock:
            self.held -= 1
            self.written.append(item)
        return value


def test_every_item_comes_out_once_and_failures_stay_with_their_item() -> None:
    tracker = Tracker()
    outcomes = list(run_pipeline(range(12), Stages(tracker.read, lambda v: v + 1, tracker.write), readers=2,
                                 writers=2, lookahead=1))
    assert sorted(o.item for o in outcomes) == list(range(12))
    failed = {o.item: type(o.error) for o in outcomes if not o.ok}
    assert failed == {3: DataError, 5: OSError}
    assert all(o.result == o.item * 10 + 1 for o in outcomes if o.ok)
    assert sorted(tracker.written) == [i for i in range(12) if i not in (3, 5)]
    assert all({"read", "compute", "write"} <= set(o.seconds) for o in outcomes if o.ok)
    # readers + lookahead prepared, one on the device, writers + lookahead waiting or being written
    assert tracker.peak <= (2 + 1) + 1 + (2 + 1)


def test_an_unexpected_error_stops_the_pipeline() -> None:
    def compute(value: int) -> int:
        if value == 20:
            raise KeyboardInterrupt
        return value

    with pytest.raises(KeyboardInterrupt):
        list(run_pipeline(range(6), Stages(lambda i: i * 10, compute, lambda i, v: v), expected=(DataError,)))


def test_compute_runs_on_the_calling_thread() -> None:
    seen = set()

    def compute(value: int) -> int:
        seen.add(threading.current_thread().name)
        return value

    list(run_pipeline(range(4), Stages(lambda i: i, compute, lambda i, v: v)))
    assert seen == {threading.current_thread().name}  # the device is driven by one thread


def test_warm_up_runs_once_while_the_first_inputs_are_being_read() -> None:
    events: list[str] = []
    reading = threading.Event()

    def read(item: int) -> int:
        reading.set()
        time.sleep(0.05)
        events.append(f"read {item}")
        return item

    def warm_up() -> None:
        assert reading.wait(1.0)  # the first reads were submitted before the warm-up started
        events.append("warm-up")

    outcomes = list(run_pipeline(range(3), Stages(read, lambda v: events.append(f"compute {v}") or v,
                                                  lambda item, v: v, warm_up=warm_up), readers=2, writers=1))
    assert [o.result for o in outcomes] == [0, 1, 2]
    assert events.count("warm-up") == 1
    assert events.index("warm-up") < events.index("compute 0")
    assert events.index("warm-up") < events.index("read 0")  # it overlapped the first read


def test_no_warm_up_without_items() -> None:
    called = []
    assert not list(run_pipeline([], Stages(int, int, lambda i, v: v, warm_up=lambda: called.append(1))))
    assert not called


def test_a_finished_write_is_yielded_before_later_cases_are_computed() -> None:
    """A case whose label map is written comes out (its manifest line, its progress line) after the next compute at
    the latest, not only once ``writers + lookahead`` later cases have been computed: a batch of CT volumes that
    take a minute each must not stay silent for several of them."""
    written = [threading.Event() for _ in range(6)]
    computed: list[int] = []

    def compute(item: int) -> int:
        if item > 0:  # the previous case's write has finished before this compute ends
            assert written[item - 1].wait(timeout=30)
        computed.append(item)
        return item

    def write(item: int, value: int) -> int:
        written[item].set()
        return value

    yielded_after = {}
    for outcome in run_pipeline(range(6), Stages(lambda i: i, compute, write), readers=1, writers=1, lookahead=3):
        yielded_after[outcome.item] = len(computed)
    assert sorted(yielded_after) == list(range(6))
    # one writer thread: write 0's future is done once write 1 has run, which compute 2 waits for
    assert yielded_after[0] <= 3 and yielded_after[1] <= 4
