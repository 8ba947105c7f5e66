"""The watchdog's rule, on offsets it is handed: lag with nothing committed for too long."""

from __future__ import annotations

from streams.metrics import WorkerMetrics
from streams.watchdog import Watchdog


class Offsets:
    """Committed offsets and high watermarks as the broker would report them."""

    def __init__(self) -> None:
        self.committed: dict[int, int] = {}
        self.high: dict[int, int] = {}

    def read(self, partitions):
        return ({p: self.committed.get(p, -1001) for p in partitions},
                {p: self.high.get(p, 0) for p in partitions})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watchdog(timeout: float = 60.0):
    offsets, clock, metrics = Offsets(), Clock(), WorkerMetrics()
    return Watchdog("-", "g", "events", timeout, metrics, clock, offsets), offsets, clock, metrics


def test_lag_with_no_commit_for_the_timeout_is_a_stall() -> None:
    dog, offsets, clock, metrics = _watchdog()
    offsets.committed, offsets.high = {0: 10, 1: 5}, {0: 10, 1: 9_260}
    assert dog.check([0, 1]) is None
    clock.now += 59
    assert dog.check([0, 1]) is None and dog.report()["status"] == "ok"
    clock.now += 2
    verdict = dog.check([0, 1])
    assert verdict is not None and "partitions [1]" in verdict and "9,255 events" in verdict
    assert dog.report()["status"] == "stalled" and dog.report()["lag"] == {"0": 0, "1": 9255}
    assert metrics.stalled_seconds._value.get() == 61


def test_progress_or_no_lag_restarts_the_clock() -> None:
    dog, offsets, clock, _ = _watchdog()
    offsets.committed, offsets.high = {0: 10}, {0: 100}
    dog.check([0])
    for _ in range(5):  # commits move every 30 s: never stalled
        clock.now += 30
        offsets.committed[0] += 5
        assert dog.check([0]) is None
    clock.now += 30
    offsets.high[0] = offsets.committed[0]  # caught up: a quiet stream is no stall
    assert dog.check([0]) is None
    clock.now += 120
    assert dog.check([0]) is None
    offsets.high[0] += 1
    clock.now += 30
    assert dog.check([0]) is None  # lag for 30 s only
    dog.progressed()  # e.g. a table recovery that advances
    clock.now += 45
    assert dog.check([0]) is None
    clock.now += 20
    assert dog.check([0]) is not None


def test_a_partition_never_committed_counts_from_when_it_was_first_seen() -> None:
    dog, offsets, clock, _ = _watchdog(timeout=10)
    offsets.high = {3: 50}
    assert dog.check([3]) is None
    clock.now += 11
    assert "50 events waiting" in dog.check([3])
