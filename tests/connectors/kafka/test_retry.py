"""The retry helper, without a broker: actions that fail on cue, a clock that moves by hand."""

from __future__ import annotations

import logging
import threading

import pytest
from confluent_kafka import KafkaError, KafkaException

from connectors.kafka.retry import Abandoned, RetriesExhausted, Retry, call, not_fatal, retriable

DOWN = KafkaError(KafkaError._TRANSPORT, "broker down", retriable=True)
SLOW = KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True)
ABORT = KafkaError(KafkaError._STATE, "abort the transaction", txn_requires_abort=True)
FENCED = KafkaError(KafkaError._FENCED, "fenced", fatal=True)


class Clock:
    """Time that passes only when the code under test sleeps or an action takes long."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class Flaky:
    """Raises the given errors one per call, then returns "done"; each call takes ``took_s``."""

    def __init__(self, clock: Clock, *errors: KafkaError, took_s: float = 0.0) -> None:
        self.clock, self.errors, self.took_s = clock, list(errors), took_s
        self.started: list[float] = []

    def __call__(self) -> str:
        self.started.append(self.clock.now)
        self.clock.now += self.took_s
        if self.errors:
            raise KafkaException(self.errors.pop(0))
        return "done"


def _call(clock: Clock, action: Flaky, retry: Retry | None = None, **kw) -> str:
    return call(action, "commit the batch", retry or Retry(), sleep=clock.sleep, clock=clock,
                **kw)


def test_waits_double_up_to_the_longest_until_the_call_goes_through(caplog) -> None:
    clock, seen = Clock(), []
    action = Flaky(clock, *[DOWN] * 5)
    with caplog.at_level(logging.INFO, "streamrec.kafka"):
        assert _call(clock, action, Retry(0.5, 4.0), on_retry=seen.append) == "done"
    assert clock.waits == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert len(action.started) == 6 and seen == [DOWN] * 5
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["cannot commit the batch: broker down; retrying in 0.5 s, waits doubling "
                     "up to 4 s (logged once per kind of failure)",
                     "commit the batch: done after 6 attempts in 11.5 s"]


def test_one_log_line_per_kind_of_failure(caplog) -> None:
    clock = Clock()
    action = Flaky(clock, DOWN, SLOW, DOWN, SLOW, DOWN)
    with caplog.at_level(logging.WARNING, "streamrec.kafka"):
        _call(clock, action)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "broker down" in warnings[0] and "timed out" in warnings[1]


def test_an_error_not_worth_retrying_is_raised_at_once_unchanged() -> None:
    clock = Clock()
    for retry, error in [(Retry(), ABORT), (Retry(worth_retrying=not_fatal), FENCED)]:
        action = Flaky(clock, error)
        with pytest.raises(KafkaException) as caught:
            _call(clock, action, retry)
        assert type(caught.value) is KafkaException and caught.value.args[0] is error
        assert len(action.started) == 1 and clock.waits == []
    with pytest.raises(KafkaException, match="no KafkaError inside"):
        call(lambda: (_ for _ in ()).throw(KafkaException("no KafkaError inside")), "x")


def test_not_fatal_retries_what_a_redone_transaction_can_fix() -> None:
    assert not_fatal(ABORT) and not_fatal(DOWN) and not not_fatal(FENCED)
    assert retriable(DOWN) and not retriable(ABORT)
    clock = Clock()
    assert _call(clock, Flaky(clock, ABORT, DOWN), Retry(worth_retrying=not_fatal)) == "done"


def test_the_last_error_past_the_attempts_is_raised_with_what_failed() -> None:
    clock = Clock()
    action = Flaky(clock, DOWN, DOWN, SLOW, DOWN)
    with pytest.raises(RetriesExhausted) as caught:
        _call(clock, action, Retry(first_wait_s=0.0, longest_wait_s=0.0, attempts=3))
    assert len(action.started) == 3 and clock.waits == [0.0, 0.0]
    exhausted = caught.value
    assert isinstance(exhausted, KafkaException) and exhausted.args[0] is SLOW
    assert exhausted.attempts == 3 and isinstance(exhausted.__cause__, KafkaException)
    assert str(exhausted) == ("cannot commit the batch: timed out (failed 3 time(s) in 0.0 s; "
                              "is the cluster reachable?)")


def test_no_try_starts_past_the_deadline() -> None:
    clock = Clock()
    action = Flaky(clock, *[DOWN] * 10, took_s=1.0)
    with pytest.raises(RetriesExhausted) as caught:
        _call(clock, action, Retry(0.5, 30.0, deadline_s=10.0))
    assert action.started == [0.0, 1.5, 3.5, 6.5, 10.0]  # the last wait cut to the deadline
    assert caught.value.attempts == 5 and caught.value.seconds == 11.0


def test_a_stop_request_during_a_wait_abandons_the_call() -> None:
    clock, stop = Clock(), threading.Event()
    action = Flaky(clock, DOWN, DOWN)
    assert call(action, "commit the batch", Retry(0.001, 0.001), sleep=stop.wait) == "done"
    action = Flaky(clock, DOWN, DOWN)
    stop.set()
    with pytest.raises(Abandoned, match="stopped while waiting to commit the batch again"):
        call(action, "commit the batch", sleep=stop.wait, clock=clock)
    assert len(action.started) == 1


@pytest.mark.parametrize(("kw", "message"), [
    ({"first_wait_s": -1.0}, "give 0 <= first_wait_s <= longest_wait_s"),
    ({"first_wait_s": 5.0, "longest_wait_s": 1.0}, "give 0 <= first_wait_s"),
    ({"attempts": 0}, "give at least 1"),
])
def test_a_retry_that_cannot_work_is_refused(kw, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Retry(**kw)
