"""The worker's watchdog: a stalled worker reports itself and exits, so that it is restarted.

A worker can be alive and connected yet read nothing: a rebalance that never completes, a
fetcher that stopped. Liveness of the process says nothing about that; progress does. Every few
seconds the watchdog asks the broker, for the events partitions this worker is assigned, how
far the group has committed and how far each partition goes. A partition with lag whose
committed offset has not moved for ``stall_timeout_s`` is stalled: ``/health`` answers 503, one
line is logged, and the worker exits with ``EXIT_STALLED`` for its supervisor (the demo, systemd,
Kubernetes) to restart it. Exiting loses nothing: offsets are committed only after what a batch
wrote is stored, and state is idempotent by source offset.

The broker's view is used rather than the client's own bookkeeping, so the watchdog also sees a
stall inside the client library.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from connectors.kafka.clients import consumer_config

log = logging.getLogger("streamrec.worker.watchdog")

WATCH_INTERVAL_S = 5.0
FROZEN_AFTER_S = 4 * WATCH_INTERVAL_S  # a gap between two looks that means we were not running
EXIT_STALLED = 75  # EX_TEMPFAIL: try again (restart)


class Watchdog:
    """Tracks committed progress of the assigned events partitions (``check`` in a thread)."""

    def __init__(self, bootstrap: str, group: str, topic: str, stall_timeout_s: float,
                 metrics: Any = None, clock: Any = time.monotonic,
                 offsets: Any = None) -> None:
        self.topic = topic
        self.bootstrap = bootstrap
        self.unreachable_since: float | None = None
        self.stall_timeout_s = stall_timeout_s
        self.metrics = metrics
        self.clock = clock
        # partition -> (committed offset, when it last moved or the lag was last zero)
        self._progress: dict[int, tuple[int, float]] = {}
        self._lag: dict[int, int] = {}
        self._lock = threading.Lock()
        self._offsets = offsets or _BrokerOffsets(bootstrap, group, topic)
        self.stalled_for = 0.0
        self._checked = clock()
        self._recovered = 0

    def check(self, partitions: list[int], recovered: int = 0) -> str | None:
        """Look once; return why the worker is stalled (None: it is not).

        ``recovered``: changelog records taken so far; while it grows, a table is being
        recovered, which offsets do not show, and that is progress too.
        """
        now = self.clock()
        if recovered != self._recovered:
            self._recovered = recovered
            self.progressed()
        try:
            committed, high = self._offsets.read(partitions)
        except KafkaException as exc:  # the cluster is unreachable: not this worker's stall
            if self.unreachable_since is None:
                self.unreachable_since = now
                log.warning("private cluster %s unreachable (%s); the worker keeps retrying",
                            self.bootstrap, _reason(exc))
            self.progressed()
            return None
        if self.unreachable_since is not None:
            log.warning("private cluster %s reachable again after %.0f s", self.bootstrap,
                        now - self.unreachable_since)
            self.unreachable_since = None
        with self._lock:
            if now - self._checked > FROZEN_AFTER_S:
                # This process did not run for a while (suspended, swapped out): what it saw
                # last is stale, so nobody else is to blame; start the clocks again.
                self._restart_clocks(now)
            self._checked = now
            progress, lag = {}, {}
            for p in partitions:
                done = committed.get(p, -1)
                behind = max(0, high.get(p, 0) - max(done, 0))
                previous = self._progress.get(p)
                if behind == 0 or previous is None or previous[0] != done:
                    progress[p] = (done, now)
                else:
                    progress[p] = previous
                lag[p] = behind
            self._progress, self._lag = progress, lag
            stuck = {p: now - since for p, (_, since) in progress.items() if lag[p] > 0}
            self.stalled_for = max(stuck.values(), default=0.0)
        if self.metrics is not None:
            self.metrics.stalled_seconds.set(self.stalled_for)
        if self.stalled_for < self.stall_timeout_s:
            return None
        waiting = sum(lag[p] for p in stuck)
        return (f"stalled: events partitions {sorted(stuck)} have {waiting:,} events waiting and "
                f"nothing committed for {self.stalled_for:.0f} s "
                f"(STREAMREC_STALL_TIMEOUT_S={self.stall_timeout_s:g})")

    def progressed(self) -> None:
        """The worker advanced in a way offsets do not show (or could not be read)."""
        with self._lock:
            self._restart_clocks(self.clock())

    def _restart_clocks(self, now: float) -> None:
        self._progress = {p: (done, now) for p, (done, _) in self._progress.items()}

    def report(self) -> dict[str, Any]:
        """What ``/health`` answers."""
        with self._lock:
            stalled = self.stalled_for >= self.stall_timeout_s
            return {"status": "stalled" if stalled else "ok",
                    "stalled_seconds": round(self.stalled_for, 1),
                    "stall_timeout_s": self.stall_timeout_s,
                    "lag": {str(p): n for p, n in sorted(self._lag.items())}}


class _BrokerOffsets:
    """The group's committed offsets and the high watermarks, from the broker."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.topic = topic
        self._consumer = Consumer(consumer_config(bootstrap, group, log_level=0, logger=_SILENT))

    def read(self, partitions: list[int]) -> tuple[dict[int, int], dict[int, int]]:
        tps = [TopicPartition(self.topic, p) for p in partitions]
        committed = {tp.partition: tp.offset
                     for tp in self._consumer.committed(tps, timeout=2.0)} if tps else {}
        high = {p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                        timeout=2.0, cached=False)[1]
                for p in partitions}
        return committed, high


_SILENT = logging.getLogger("streamrec.worker.watchdog.librdkafka")  # an outage is not its news
_SILENT.propagate = False
_SILENT.addHandler(logging.NullHandler())


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else exc
    return error.str() if hasattr(error, "str") else str(error)


def exit_now(code: int) -> None:
    """Leave at once: a stalled worker may not stop cleanly (nothing is lost, see above)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)
