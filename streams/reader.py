"""Events read with librdkafka for the partitions Faust assigned to this worker.

Faust's Kafka client (aiokafka) runs in its own Python thread: every fetch is parsed in Python
and every hand-over to the event loop crosses threads, which at 1,000 events/s cost a third of
a core and about ten milliseconds per event on a 2-core machine. The events topic is therefore
read by a librdkafka consumer (confluent-kafka), whose fetcher threads run in C: one Python
thread waits in ``poll`` with the GIL released and passes whatever arrived to the event loop in
one call.

Faust keeps everything else: group membership and partition assignment, table recovery, the
offsets committed for the group (from the intake's acknowledgements) and every other topic. The
reader never joins the group: it is assigned, by the intake, exactly the events partitions Faust
has made active (assigned and recovered), starting from the offsets Faust sought to, and aiokafka
is told not to fetch those partitions itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from typing import Any

from confluent_kafka import OFFSET_STORED, Consumer, KafkaError, Message, TopicPartition

from connectors.kafka.clients import consumer_config
from streamrec.errors import StreamrecError

log = logging.getLogger("streamrec.worker.reader")

POLL_S = 0.05  # how long the reader thread waits in librdkafka before it looks at its orders
STATS_INTERVAL_MS = 2000  # how often librdkafka reports partition watermarks


class ReaderError(StreamrecError):
    """The events reader cannot go on (the message says why)."""


class EventReader:
    """One librdkafka consumer over the events partitions it is told to read.

    ``assign`` (event loop) names the partitions and start offsets of a new generation; the reader
    thread applies it between two polls and from then on tags what it reads with that generation,
    so the loop drops anything read for an older one. ``take`` (event loop) returns what arrived.
    At most ``max_buffered`` records wait in hand; beyond that the thread stops polling.
    """

    def __init__(self, bootstrap: str, group: str, topic: str, max_buffered: int = 8192,
                 config: dict[str, Any] | None = None) -> None:
        self.topic = topic
        self.max_buffered = max_buffered
        # The workers' group, whose committed offsets it starts from when told to (``assign``);
        # it never joins the group nor commits (the consumer default): the offsets are Faust's,
        # committed by it.
        self._consumer = Consumer(consumer_config(bootstrap, group, **{
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # As Faust's own consumer reads (it is not transactional unless exactly-once is on).
            "isolation.level": "read_uncommitted",
            "fetch.wait.max.ms": 100,
            # Partition high watermarks for the lag gauge, read in the reader thread's poll.
            "statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": self._on_stats,
            **(config or {}),
        }))
        self._marks: dict[int, tuple[int, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived: deque[tuple[int, list[Message]]] = deque()
        self._buffered = 0
        self._wakeup: asyncio.Event | None = None
        self._room = threading.Event()
        self._room.set()
        self._lock = threading.Lock()
        self._orders: tuple[int, list[TopicPartition]] | None = None
        self.generation = 0  # of the newest assignment asked for (event loop)
        self.assigned: dict[int, int | None] = {}  # partition -> start offset, as asked
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand what is read to ``loop`` (``start`` does it; alone, for tests without a thread)."""
        self._loop = loop
        self._wakeup = asyncio.Event()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the reader thread; what it reads is handed to ``loop``."""
        self.attach(loop)
        self._thread = threading.Thread(target=self._run, name="events-reader", daemon=True)
        self._thread.start()

    def assign(self, starts: dict[int, int | None]) -> None:
        """Read these partitions from these offsets from now on.

        None: from the offset the group committed (the reader's ``group``), or the beginning
        if it committed none. Never simply the beginning: after some rebalances Faust has not
        recorded a start for a partition whose offsets are committed, and reading it from the
        beginning rewrote recommendations from old events. Everything read before, and not
        yet taken, is dropped.
        """
        self.generation += 1
        self.assigned = dict(starts)
        parts = [TopicPartition(self.topic, p, OFFSET_STORED if o is None else o)
                 for p, o in sorted(starts.items())]
        with self._lock:
            self._orders = (self.generation, parts)
        self._drop_arrived()

    async def wait(self, timeout: float) -> None:
        """Return when records are in hand, or after ``timeout`` seconds."""
        if self._arrived or timeout <= 0:
            return
        assert self._wakeup is not None and self._loop is not None
        self._wakeup.clear()
        timer = self._loop.call_later(timeout, self._wakeup.set)  # cheaper than wait_for
        try:
            await self._wakeup.wait()
        finally:
            timer.cancel()

    def nudge(self, *_: Any) -> None:
        """Wake a ``wait`` now (the intake's pipeline has room for the next batch)."""
        if self._wakeup is not None:
            self._wakeup.set()

    def take(self) -> list[Message]:
        """The records read for the current generation since the last call, in arrival order."""
        self._raise_if_failed()
        out: list[Message] = []
        while self._arrived:
            generation, messages = self._arrived.popleft()
            self._buffered -= len(messages)
            if generation == self.generation:
                out.extend(messages)
        if self._buffered < self.max_buffered:
            self._room.set()
        return out

    def watermarks(self, partition: int) -> tuple[int, int] | None:
        """Low and high offsets of ``partition`` at the last statistics (None: not known yet).

        From librdkafka's statistics, because ``get_watermark_offsets`` can block the caller
        while the reader thread polls.
        """
        return self._marks.get(partition)

    def _on_stats(self, stats: str) -> None:
        partitions = json.loads(stats).get("topics", {}).get(self.topic, {}).get("partitions", {})
        marks = {}
        for key, part in partitions.items():
            partition, low, high = int(key), part.get("lo_offset", -1), part.get("hi_offset", -1)
            if partition >= 0 and high >= 0:
                marks[partition] = (low, high)
        self._marks = marks

    def stop(self) -> None:
        """Stop the thread and close the consumer (it commits nothing)."""
        self._stop.set()
        self._room.set()
        if self._thread is not None:
            self._thread.join(5.0)
        else:
            self._consumer.close()

    def _drop_arrived(self) -> None:
        while self._arrived:
            _, messages = self._arrived.popleft()
            self._buffered -= len(messages)
        self._room.set()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise ReaderError(f"the events reader stopped: {self.error}") from self.error

    def _arrive(self, generation: int, messages: list[Message]) -> None:
        """On the event loop: keep what the thread read and wake the intake."""
        self._arrived.append((generation, messages))
        self._buffered += len(messages)
        if self._buffered >= self.max_buffered:
            self._room.clear()
        assert self._wakeup is not None
        self._wakeup.set()

    def _run(self) -> None:
        consumer = self._consumer
        generation = 0
        assert self._loop is not None
        call = self._loop.call_soon_threadsafe
        try:
            while not self._stop.is_set():
                with self._lock:
                    orders, self._orders = self._orders, None
                if orders is not None:
                    generation, parts = orders
                    consumer.assign(parts)
                    log.info("reading %s partitions %s", self.topic,
                             [(p.partition, p.offset) for p in parts])
                if not self._room.wait(POLL_S):
                    continue
                first = consumer.poll(POLL_S)
                if first is None:
                    continue
                messages = [first, *consumer.consume(1000, timeout=0)]
                good = [m for m in messages if _usable(m)]
                if good:
                    call(self._arrive, generation, good)
        except BaseException as exc:  # noqa: BLE001 - reported to the intake, which fails
            log.exception("the events reader failed")
            self.error = exc
            try:
                call(self._wakeup.set)  # type: ignore[union-attr]
            except RuntimeError:
                pass  # the loop is closed: the worker is stopping anyway
        finally:
            consumer.close()


def _usable(message: Message) -> bool:
    """True for a record; logs and skips librdkafka's error events (it retries on its own)."""
    err = message.error()
    if err is None:
        return True
    if err.fatal():
        raise ReaderError(f"fatal consumer error: {err.str()}")
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("events reader: %s", err.str())
    return False

