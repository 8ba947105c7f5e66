"""Try a call to a Kafka cluster again while it fails for a reason that may pass.

    call(lambda: producer.commit_transaction(30), "commit the batch", Retry(attempts=3))

Whether a failure is worth another try is librdkafka's to say, through the ``KafkaError`` it
raised: ``retriable`` errors may pass if the same call is made again; anything ``not_fatal`` may
pass for a caller that redoes its whole step, aborting first a transaction that
``txn_requires_abort``. Fatal errors (a fenced producer) never pass and are raised at once.

Waits grow from ``first_wait_s``, doubling up to ``longest_wait_s``, and never run past the
deadline. A cluster that is down for an hour logs one line per kind of failure, not one per try,
and one line when the call goes through again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

from streamrec.errors import ClusterUnreachable

T = TypeVar("T")
log = logging.getLogger("streamrec.kafka")


def retriable(err: KafkaError) -> bool:
    """librdkafka says the same call may succeed if it is made again."""
    return err.retriable()


def not_fatal(err: KafkaError) -> bool:
    """Anything but a fatal error: worth another try by a caller that redoes its whole step."""
    return not err.fatal()


@dataclass(frozen=True)
class Retry:
    """When a failed call is tried again, and how long to wait before each new try."""

    first_wait_s: float = 0.5  # 0: every new try at once
    longest_wait_s: float = 30.0
    attempts: int | None = None  # tries in all, the first included; None: no limit
    deadline_s: float | None = None  # no new try this long after the first one began
    worth_retrying: Callable[[KafkaError], bool] = retriable

    def __post_init__(self) -> None:
        if self.first_wait_s < 0 or self.longest_wait_s < self.first_wait_s:
            raise ValueError(f"waits of {self.first_wait_s} s up to {self.longest_wait_s} s: "
                             "give 0 <= first_wait_s <= longest_wait_s")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts={self.attempts}: give at least 1 (or None: no limit)")

    def describe(self) -> str:
        """The plan in words, for the first log line of a failing call."""
        plan = ("retrying at once" if self.first_wait_s == 0 else
                f"retrying in {self.first_wait_s:g} s, waits doubling up to "
                f"{self.longest_wait_s:g} s")
        if self.attempts is not None:
            plan += f", {self.attempts} attempts at most"
        if self.deadline_s is not None:
            plan += f", for {self.deadline_s:g} s at most"
        return plan


class Abandoned(Exception):
    """The wait before another try was cut short: ``sleep`` returned True (a stop request)."""


class RetriesExhausted(KafkaException, ClusterUnreachable):
    """A call failed on every try its ``Retry`` allowed; ``args[0]`` is the last KafkaError.

    Still a ``KafkaException``, so callers that catch one catch it too.
    """

    def __init__(self, error: KafkaError, what: str, attempts: int, seconds: float) -> None:
        super().__init__(error)
        self.what, self.attempts, self.seconds = what, attempts, seconds

    def __str__(self) -> str:
        return (f"cannot {self.what}: {self.args[0].str()} (failed {self.attempts} time(s) in "
                f"{self.seconds:.1f} s; is the cluster reachable?)")


def call(action: Callable[[], T], what: str, retry: Retry = Retry(), *,
         on_retry: Callable[[KafkaError], None] | None = None,
         sleep: Callable[[float], bool | None] = time.sleep,
         clock: Callable[[], float] = time.monotonic,
         logger: logging.Logger = log) -> T:
    """``action()``, tried again while it raises a KafkaException that ``retry`` deems passing.

    ``what`` names the call in log lines and errors ("commit the batch"). ``on_retry`` sees each
    error that is followed by another try, before the wait. ``sleep`` waits; one that returns
    True (``threading.Event.wait`` once the event is set) abandons the call: ``Abandoned``. An
    error not worth retrying propagates unchanged; one that outlasts ``retry.attempts`` or
    ``retry.deadline_s`` is raised as ``RetriesExhausted``.
    """
    start, wait, logged, attempt = clock(), retry.first_wait_s, set(), 0
    while True:
        attempt += 1
        try:
            result = action()
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is None or not retry.worth_retrying(err):
                raise
            elapsed = clock() - start
            left = None if retry.deadline_s is None else retry.deadline_s - elapsed
            if attempt == retry.attempts or (left is not None and left <= 0):
                raise RetriesExhausted(err, what, attempt, elapsed) from exc
            if on_retry is not None:
                on_retry(err)
            if err.code() not in logged:
                logged.add(err.code())
                logger.warning("cannot %s: %s; %s (logged once per kind of failure)",
                               what, err.str(), retry.describe())
            if sleep(wait if left is None else min(wait, left)) is True:
                raise Abandoned(f"stopped while waiting to {what} again") from None
            wait = min(wait * 2, retry.longest_wait_s)
            continue
        if attempt > 1:
            logger.info("%s: done after %d attempts in %.1f s", what, attempt, clock() - start)
        return result
