"""The watchdog's rule, on offsets it is handed: lag with nothing committed for too long."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.metrics import WorkerMetrics
from streams.watchdog import Watchdog


class Offsets:
    """Committed offsets and high watermarks as the broker would report them."""

    def __init__(self) -> None:
        self.committed: dict[int, int] = {}
        self.high: dict[int, int] = {}
        self.down = False

    def read(self, partitions):
        if self.down:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Connection refused"))
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
    for _ in range(11):
        clock.now += 5
        assert dog.check([0, 1]) is None and dog.report()["status"] == "ok"
    clock.now += 6
    verdict = dog.check([0, 1])
    assert verdict is not None and "partitions [1]" in verdict and "9,255 events" in verdict
    assert dog.report()["status"] == "stalled" and dog.report()["lag"] == {"0": 0, "1": 9255}
    assert metrics.stalled_seconds._value.get() == 61


def test_a_process_that_did_not_run_for_a_while_does_not_blame_the_group() -> None:
    dog, offsets, clock, _ = _watchdog(timeout=30)
    offsets.committed, offsets.high = {0: 10}, {0: 100}
    dog.check([0])
    clock.now += 100  # suspended: no look for 100 s
    assert dog.check([0]) is None
    for _ in range(6):
        clock.now += 5
        verdict = dog.check([0])
    assert verdict is not None  # 30 s of looking at no progress


def test_progress_or_no_lag_restarts_the_clock() -> None:
    dog, offsets, clock, _ = _watchdog()
    offsets.committed, offsets.high = {0: 10}, {0: 100}
    dog.check([0])

    def look(seconds: float) -> str | None:
        verdict = None
        for _ in range(int(seconds // 5)):
            clock.now += 5
            verdict = dog.check([0])
        return verdict

    for _ in range(5):  # commits move every 30 s: never stalled
        assert look(25) is None
        offsets.committed[0] += 5
        assert look(5) is None
    offsets.high[0] = offsets.committed[0]  # caught up: a quiet stream is no stall
    assert look(120) is None
    offsets.high[0] += 1
    assert look(30) is None  # lag for 30 s only
    dog.progressed()  # e.g. a table recovery that advances
    assert look(55) is None
    assert look(10) is not None


def test_a_partition_never_committed_counts_from_when_it_was_first_seen() -> None:
    dog, offsets, clock, _ = _watchdog(timeout=10)
    offsets.high = {3: 50}
    assert dog.check([3]) is None
    clock.now += 5
    assert dog.check([3]) is None
    clock.now += 6
    assert "50 events waiting" in dog.check([3])


def test_an_unreachable_cluster_is_one_line_when_lost_and_one_when_back(
        caplog: pytest.LogCaptureFixture) -> None:
    dog, offsets, clock, _ = _watchdog(timeout=10)
    offsets.committed, offsets.high = {0: 1}, {0: 9}
    dog.check([0])
    offsets.down = True
    with caplog.at_level(logging.WARNING, logger="streamrec.worker.watchdog"):
        for _ in range(8):  # 40 s without the cluster: no stall, one line
            clock.now += 5
            assert dog.check([0]) is None
        offsets.down = False
        clock.now += 5
        assert dog.check([0]) is None
    assert [r.getMessage() for r in caplog.records] == [
        "private cluster - unreachable (Connection refused); the worker keeps retrying",
        "private cluster - reachable again after 40 s"]
