"""Batch intake: the events topic goes from Faust's consumer to the worker a micro-batch at a time.

Faust hands a stream one record at a time: a message object, a pair of asyncio tasks, the
conductor, an event, a queue, the stream iterator and an ack per record. On a 2-core machine
that path alone tops out near 5,000 records/s with an agent that does nothing, so no agent on it
can reach that rate. ``BatchIntake`` replaces only the consumer's drain loop (the coroutine
Faust's fetcher runs): the records of the events topic are gathered straight from the fetch
result, in partition order, until ``max_records`` or ``max_ms``, handed to the worker as one
list, and acknowledged together once the worker returns. Everything else stays Faust's: group
membership and partition assignment, table recovery and changelogs, flow control during
rebalances, offset commits (from the same ack bookkeeping), and records of every other topic
(changelogs during recovery), which still go through the conductor one by one.

Offsets are acknowledged only after the handler returns, so a crash or a rebalance in the middle
of a batch leaves its offsets uncommitted: the batch is read again (at least once), and user
state is idempotent by source offset.

With a ``reader_factory`` (the worker's default), the events themselves are not fetched by
Faust's aiokafka client at all but by an ``EventReader`` (librdkafka, see ``streams.reader``),
assigned after each rebalance to the events partitions Faust made active, from the offsets Faust
sought to; aiokafka is told to pause those partitions. Batching, acknowledgements, commits and
every other topic are as above.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.pipeline import Incoming
from streams.reader import EventReader

log = logging.getLogger("streamrec.worker.intake")

# Called with each batch: does the batch's first stage synchronously and returns the rest.
Handler = Callable[[list[Incoming]], Awaitable[Any]]
# Called with what a batch's rest returned: waits until everything the batch wrote is stored.
Settle = Callable[[Any], Awaitable[None]]


class _InFlight:
    """Stands for a batch being processed in the consumer's set of unacknowledged messages.

    Faust waits for that set to empty before it closes the tables of revoked partitions and
    before it stops; with this token in it, it waits for the batch as it would for an event.
    """

    refcount = 1

    def __init__(self, size: int) -> None:
        self.acked = False
        self.size = size

    def __repr__(self) -> str:
        return f"<batch of {self.size} events in flight>"


class BatchIntake:
    """Installs itself as the drain loop of a Faust app's consumer (see the module docstring)."""

    def __init__(self, topic: str, handler: Handler, settle: Settle, max_records: int,
                 max_ms: float, depth: int = 3,
                 reader_factory: Callable[[], EventReader] | None = None,
                 min_ms: float = 0.0) -> None:
        self.topic = topic
        self.reader_factory = reader_factory
        self.reader: EventReader | None = None  # the running drain's reader, if any
        self.handler = handler
        self.settle = settle
        self.depth = depth
        self.max_records = max_records
        self.max_s = max_ms / 1000.0
        self.min_s = min(min_ms, max_ms) / 1000.0
        self.consumer: Any = None
        self._rested: asyncio.Future | None = None  # the newest batch's rest
        self._done: asyncio.Future | None = None  # the newest batch's settle and ack
        self._in_flight: deque[asyncio.Future] = deque()
        self.other_records = 0  # records of other topics taken (changelogs being recovered)
        # Set once the worker may produce (its output is warm): no batch is processed before.
        self.ready = asyncio.Event()

    def install(self, consumer: Any) -> None:
        """Make ``consumer`` drain through this intake (Faust's fetcher calls the attribute)."""
        self.consumer = consumer
        consumer._drain_messages = self._drain
        faust_verify = consumer.verify_event_path

        def verify_event_path(now: float, tp: TP) -> None:
            # Faust's stalled-stream check reads the times of its own per-record path. The
            # events never take that path (the reader fetches them, or the intake drains
            # them), and a table's changelog is written, not read, once it is recovered: the
            # check would log an ERROR for each every 2.5 s once the worker has run for
            # stream_processing_timeout. The worker's watchdog (streams.watchdog) watches the
            # events partitions' committed progress instead.
            if tp.topic != self.topic and tp.topic not in consumer.app.tables.changelog_topics:
                faust_verify(now, tp)

        consumer.verify_event_path = verify_event_path

    async def _drain(self, fetcher: Any) -> None:
        """What Faust's fetcher runs: the intake's loop, ended quietly when the app stops."""
        consumer = self.consumer
        reader = None
        try:
            if self.reader_factory is None:
                await self._drain_faust(fetcher)
            else:
                reader = self.reader = self.reader_factory()
                reader.start(asyncio.get_running_loop())
                await self._drain_reader(fetcher, reader)
        except consumer.consumer_stopped_errors:
            if consumer.transport.app.should_stop:
                log.info("broker stopped the consumer, shutting down")
                return
            raise
        except asyncio.CancelledError:
            if consumer.transport.app.should_stop:
                return
            raise
        except Exception:
            log.exception("the event intake failed and stops (offsets of the batches in hand "
                          "are not committed; a restart reads them again)")
            raise
        finally:
            if reader is not None:
                reader.stop()

    async def _drain_faust(self, fetcher: Any) -> None:
        """The drain loop when Faust's own client fetches the events."""
        consumer = self.consumer
        app = consumer.app
        consumer_stopped = consumer._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        pending: list[Incoming] = []
        opened = 0.0  # when the oldest pending record was taken
        generation = None
        while not (consumer_stopped() or fetcher_stopped()):
            self._raise_if_failed()
            wait = 1.0 if not pending else max(0.0, opened + self.max_s - time.monotonic())
            records, active = await consumer._wait_next_records(wait)
            if records is None or consumer.should_stop:
                continue
            if not consumer.flow_active or app.consumer_generation_id != generation:
                # A rebalance started or happened: what was gathered is read again from
                # the committed offsets once Faust resumes the flow.
                pending.clear()
                generation = app.consumer_generation_id
                if not consumer.flow_active:
                    await self._seek_back(consumer)
                    continue
            if records:
                took = await self._take(consumer, records, active, pending)
                if took and len(pending) == took:
                    opened = time.monotonic()
            pending, opened = await self._close_batches(consumer, pending, opened, False)

    async def _drain_reader(self, fetcher: Any, reader: EventReader) -> None:
        """The drain loop when a librdkafka ``EventReader`` reads the events (module docstring)."""
        consumer = self.consumer
        app = consumer.app
        consumer_stopped = consumer._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        pending: list[Incoming] = []
        opened = 0.0
        generation = None
        paused: frozenset = frozenset()  # events partitions paused in aiokafka
        reading: frozenset = frozenset()  # events partitions the reader was assigned
        touched = time.monotonic()
        nudging: asyncio.Future | None = None
        while not (consumer_stopped() or fetcher_stopped()):
            self._raise_if_failed()
            if app.consumer_generation_id != generation or not consumer.flow_active:
                # A rebalance started or happened: stop reading; what was gathered is read
                # again from the committed offsets once Faust resumes the flow.
                pending.clear()
                generation = app.consumer_generation_id
                paused = frozenset()  # a new assignment in aiokafka starts unpaused
                if reading:
                    reader.assign({})
                    reading = frozenset()
            assignment = consumer.assignment()
            events_assigned = frozenset(tp for tp in assignment if tp.topic == self.topic)
            if not events_assigned <= paused:
                # Before any other fetch: aiokafka drops what it fetched for them, if any.
                await self._pause_in_aiokafka(consumer, events_assigned)
                paused = events_assigned
            if not consumer.flow_active:
                await consumer.wait(consumer.can_resume_flow)
                continue
            active = consumer._get_active_partitions()
            events_active = frozenset(tp for tp in active if tp.topic == self.topic)
            if events_active != reading:
                reader.assign(self._starts(consumer, events_active))
                reading = events_active
                pending.clear()
            # Changelogs being recovered (or standbys) still come through Faust; the only
            # other topic assigned, Faust's leader-election topic, carries no records.
            changelogs = app.tables.changelog_topics
            others = {tp for tp in active if tp.topic in changelogs}
            wait = 1.0 if not pending else max(0.0, opened + self.max_s - time.monotonic())
            if pending and self._scorer_free():
                wait = max(0.0, opened + self.min_s - time.monotonic())
            if others:  # Faust's path, briefly if events are being read too
                records = await consumer._getmany(
                    active_partitions=others, timeout=min(wait, 0.005) if reading else wait)
                touched = time.monotonic()
                if records:
                    await self._take(consumer, records, others, [])
            else:
                await reader.wait(wait)
                if time.monotonic() - touched > 5.0:
                    await self._touch_aiokafka(consumer)
                    touched = time.monotonic()
            if app.consumer_generation_id != generation or not consumer.flow_active:
                continue
            took = self._take_read(consumer, reader.take(), reading, pending)
            if took and len(pending) == took:
                opened = time.monotonic()
            # Also when the scorer is free: a quiet stream is not held for the window.
            pending, opened = await self._close_batches(consumer, pending, opened, True)
            if self._rested is not None and self._rested is not nudging:
                nudging = self._rested
                nudging.add_done_callback(reader.nudge)  # wake the wait once it is scored

    async def _close_batches(self, consumer: Any, pending: list[Incoming], opened: float,
                             when_free: bool) -> tuple[list[Incoming], float]:
        """Process full batches, then the rest if its window has passed (or, ``when_free``, if
        no batch is being scored and it is at least ``min_ms`` old); returns what stays pending
        and when it was opened."""
        while len(pending) >= self.max_records:
            batch, pending = pending[:self.max_records], pending[self.max_records:]
            await self._process(consumer, batch)
            opened = time.monotonic()
        waited = time.monotonic() - opened
        if pending and (when_free and self._scorer_free() and waited >= self.min_s
                        or waited >= self.max_s):
            await self._process(consumer, pending)
            pending = []
        return pending, opened

    def _scorer_free(self) -> bool:
        """True when no batch is being scored or written (its rest is done)."""
        return self._rested is None or self._rested.done()

    @staticmethod
    def _starts(consumer: Any, tps: frozenset) -> dict[int, int | None]:
        """Where to read each partition from: where Faust sought to (the committed offset).

        Also sets Faust's read offset of each partition to that start, as its seek does.
        """
        starts: dict[int, int | None] = {}
        for tp in tps:
            offset = consumer._read_offset.get(tp)
            if offset is None:
                offset = consumer._committed_offset.get(tp)
            starts[tp.partition] = offset if offset is not None and offset >= 0 else None
            consumer._read_offset[tp] = starts[tp.partition]
        return starts

    @staticmethod
    async def _pause_in_aiokafka(consumer: Any, tps: frozenset) -> None:
        """Stop aiokafka fetching ``tps`` (it also drops what it fetched for them)."""
        from aiokafka import TopicPartition as AioTP

        def pause(aio_consumer: Any) -> None:
            aio_consumer.pause(*(AioTP(tp.topic, tp.partition) for tp in tps))

        if tps:
            await consumer._thread.call_thread(pause, consumer._thread._ensure_consumer())

    @staticmethod
    async def _touch_aiokafka(consumer: Any) -> None:
        """Tell aiokafka the app still polls (it leaves the group after max.poll.interval)."""
        def touch(aio_consumer: Any) -> None:
            with aio_consumer._subscription.fetch_context():
                pass

        await consumer._thread.call_thread(touch, consumer._thread._ensure_consumer())

    def _take_read(self, consumer: Any, messages: list, reading: frozenset,
                   pending: list[Incoming]) -> int:
        """Move what the reader read into ``pending`` (Faust's in-order rule, gaps recorded)."""
        if not messages:
            return 0
        app = consumer.app
        read_offset = consumer._read_offset
        gaps = app.topics.acks_enabled_for(self.topic)
        topic = self.topic
        by_partition = {tp.partition: tp for tp in reading}
        touched: set[TP] = set()
        took = 0
        for message in messages:
            tp = by_partition.get(message.partition())
            if tp is None:  # not a partition this worker reads (any more)
                continue
            offset = message.offset()
            if not _next_in_order(consumer, tp, offset, read_offset.get(tp), gaps):
                continue
            pending.append(Incoming(message.key(), message.value(), topic, tp.partition, offset,
                                    message.timestamp()[1]))
            read_offset[tp] = offset
            touched.add(tp)
            took += 1
        now = time.monotonic()
        for tp in touched:
            app.monitor.stream_inbound_time[tp] = now  # Faust's stalled-stream check reads it
        return took

    def lag(self) -> dict[TP, int]:
        """Events not yet read per partition the reader reads (empty without a reader)."""
        reader, consumer = self.reader, self.consumer
        if reader is None or consumer is None:
            return {}
        out = {}
        for partition in reader.assigned:
            tp = TP(self.topic, partition)
            marks = reader.watermarks(partition)
            last = consumer._read_offset.get(tp)
            if marks is not None:
                out[tp] = max(0, marks[1] - (last + 1 if last is not None else marks[0]))
                consumer.app.monitor.track_tp_end_offset(tp, marks[1])
        return out

    async def _take(self, consumer: Any, records: dict, active: set | None,
                    pending: list[Incoming]) -> int:
        """Move the fetched events into ``pending``; other topics go through the conductor."""
        app = consumer.app
        read_offset = consumer._read_offset
        buffered = consumer._buffered_partitions
        now = time.monotonic()
        took = 0
        for tp, batch in records.items():
            if active is not None and tp not in active and tp not in buffered:
                continue
            if tp.topic != self.topic:
                await self._deliver_one_by_one(consumer, tp, batch)
                continue
            app.monitor.track_tp_end_offset(tp, consumer.highwater(tp))
            gaps = app.topics.acks_enabled_for(tp.topic)
            last = read_offset[tp]
            for record in batch:
                offset = record.offset
                if not _next_in_order(consumer, tp, offset, last, gaps):
                    continue
                pending.append(Incoming(record.key, record.value, tp.topic, tp.partition,
                                        offset, record.timestamp))
                last = offset
                took += 1
            read_offset[tp] = last
            app.monitor.stream_inbound_time[tp] = now  # Faust's stalled-stream check reads it
        return took

    async def _deliver_one_by_one(self, consumer: Any, tp: TP, batch: list) -> None:
        """Faust's own per-record path, for records that are not events."""
        read_offset = consumer._read_offset
        gaps = consumer.app.topics.acks_enabled_for(tp.topic)
        self.other_records += len(batch)
        for record in batch:
            offset = record.offset
            if not _next_in_order(consumer, tp, offset, read_offset[tp], gaps):
                continue
            message = consumer._to_message(tp, record)
            await consumer.wait_first(consumer.callback(message), consumer.suspend_flow.wait())
            read_offset[tp] = offset

    async def _process(self, consumer: Any, batch: list[Incoming]) -> None:
        """Run the handler's first stage now; its rest and its settling follow in the background.

        Three stages, each in batch order: the first stage (on the event loop, now); the rest
        the handler returns (scoring in a pool thread, then output), after the previous batch's
        rest; and settling (the broker acknowledges what the batch wrote), after which the batch
        is acknowledged. So the event loop takes and prepares batch k+1 while batch k is scored
        and settled. At most ``depth`` batches are in flight; beyond that the intake waits.
        """
        if not self.ready.is_set():
            # Only events wait: changelog records (table recovery) keep flowing meanwhile.
            await self.ready.wait()
        token = _InFlight(len(batch))
        consumer._unacked_messages.add(token)
        try:
            rest = self.handler(batch)
        except BaseException:
            self._release(consumer, token)
            raise
        rested = asyncio.ensure_future(self._rest(self._rested, rest))
        done = asyncio.ensure_future(self._complete(consumer, batch, token, rested, self._done))
        self._rested, self._done = rested, done
        self._in_flight.append(done)
        while len(self._in_flight) > self.depth:
            await self._in_flight.popleft()
        every = consumer._commit_every
        if every is not None and consumer._n_acked >= every:
            consumer._n_acked = 0
            await consumer.commit()

    @staticmethod
    async def _rest(previous: asyncio.Future | None, rest: Awaitable[Any]) -> Any:
        try:
            if previous is not None:
                await previous
        except BaseException:
            if inspect.iscoroutine(rest):
                rest.close()  # an earlier batch failed: this one is read again after a restart
            raise
        return await rest

    async def _complete(self, consumer: Any, batch: list[Incoming], token: _InFlight,
                        rested: asyncio.Future, previous: asyncio.Future | None) -> None:
        try:
            outcome = await rested
            if previous is not None:
                await previous
            # Nothing of the batch may be lost once its offsets can be committed.
            await self.settle(outcome)
            self._ack(consumer, batch)
        finally:
            self._release(consumer, token)

    def _raise_if_failed(self) -> None:
        for future in (self._done, *self._in_flight):
            if future is not None and future.done() and not future.cancelled():
                error = future.exception()
                if error is not None:
                    raise error

    @staticmethod
    def _release(consumer: Any, token: _InFlight) -> None:
        token.acked = True
        consumer._unacked_messages.discard(token)
        notify(consumer._waiting_for_ack)

    @staticmethod
    def _ack(consumer: Any, batch: list[Incoming]) -> None:
        """Acknowledge a processed batch, as ``Consumer.ack`` does record by record."""
        by_tp: dict[TP, list[int]] = {}
        for msg in batch:
            by_tp.setdefault(TP(msg.topic, msg.partition), []).append(msg.offset)
        with ack_lock:
            for tp, offsets in by_tp.items():
                committed = consumer._committed_offset[tp]
                index = consumer._acked_index[tp]
                fresh = [o for o in offsets
                         if (committed is None or o >= committed) and o not in index]
                index.update(fresh)
                consumer._acked[tp].extend(fresh)
                consumer._n_acked += len(fresh)

    @staticmethod
    async def _seek_back(consumer: Any) -> None:
        # What Faust's getmany does when it is called while the flow is stopped.
        try:
            await consumer.perform_seek()
        except Exception as exc:  # noqa: BLE001 - Faust logs and carries on here too
            log.warning("could not seek back to the committed offsets: %s", exc)


def _next_in_order(consumer: Any, tp: TP, offset: int, last: int | None, gaps: bool) -> bool:
    """Faust's rule for a fetched record: False if it was read already in this generation.

    Offsets skipped on the way (transaction markers, compaction) are recorded as a gap when the
    topic is acknowledged, so that commits can move past them, as Faust's ``_add_gap`` does (the
    same interval, without its ``sleep(0)``).
    """
    if last is not None and offset < last:
        return False
    if last and offset - last > 1 and gaps:
        start, committed = last + 1, consumer._committed_offset[tp]
        if committed is not None:
            start = max(start, committed + 1)
        if start <= offset:
            consumer._gap[tp].addi(start, offset + 1)  # the end of an interval is excluded
    return True


class IntakeApp(faust.App):
    """A Faust app whose consumer drains through a ``BatchIntake`` once one is attached."""

    intake: BatchIntake | None = None

    def _new_consumer(self) -> Any:
        consumer = super()._new_consumer()
        if self.intake is not None:
            self.intake.install(consumer)
        return consumer
