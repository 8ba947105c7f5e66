"""Batch intake: the events topic goes from Faust's consumer to the worker a micro-batch at a time.

Faust hands a stream one record at a time: a message object, a pair of asyncio tasks, the
conductor, an event, a queue, the stream iterator and an ack per record. An agent on that path
that does nothing takes a backlog more slowly than the whole worker does (the "Faust alone"
figure in ``benchmarks/README.md``). ``BatchIntake`` replaces only the consumer's drain loop (the
coroutine
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
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from streams import faust_adapter as fa
from streams.batches import BatchesInFlight, Handler, Settle
from streams.pipeline import Incoming
from streams.reader import EventReader

log = logging.getLogger("streamrec.worker.intake")



@dataclass
class _Reading:
    """What the reader's drain loop keeps between rounds."""

    generation: Any = None  # Faust's consumer generation the assignment below belongs to
    paused: frozenset = frozenset()  # events partitions paused in aiokafka
    reading: frozenset = frozenset()  # events partitions the reader was assigned
    others: set = field(default_factory=set)  # other partitions Faust fetches (changelogs)
    touched: float = field(default_factory=time.monotonic)  # aiokafka's poll clock last set
    nudging: asyncio.Future | None = None  # the batch whose scoring wakes the reader's wait


class BatchIntake(BatchesInFlight):
    """Installs itself as the drain loop of a Faust app's consumer (see the module docstring)."""

    def __init__(self, topic: str, handler: Handler, settle: Settle, max_records: int,
                 max_ms: float, depth: int = 3,
                 reader_factory: Callable[[], EventReader] | None = None,
                 min_ms: float = 0.0) -> None:
        super().__init__(handler, settle, max_records, max_ms, depth, min_ms)
        self.topic = topic
        self.reader_factory = reader_factory
        self.reader: EventReader | None = None  # the running drain's reader, if any
        self.consumer: Any = None
        self.other_records = 0  # records of other topics taken (changelogs being recovered)

    def install(self, consumer: Any) -> None:
        """Make ``consumer`` drain through this intake (Faust's fetcher calls the attribute)."""
        self.consumer = consumer
        fa.install_drain(consumer, self._drain)
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
        consumer_stopped, fetcher_stopped = fa.stopped(consumer), fa.stopped(fetcher)
        pending: list[Incoming] = []
        opened = 0.0  # when the oldest pending record was taken
        generation = None
        while not (consumer_stopped() or fetcher_stopped()):
            self._raise_if_failed()
            wait = 1.0 if not pending else max(0.0, opened + self.max_s - time.monotonic())
            records, active = await fa.wait_next_records(consumer, wait)
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
        consumer_stopped, fetcher_stopped = fa.stopped(consumer), fa.stopped(fetcher)
        pending: list[Incoming] = []
        opened = 0.0
        state = _Reading()
        while not (consumer_stopped() or fetcher_stopped()):
            self._raise_if_failed()
            if not await self._follow_assignment(consumer, reader, state, pending):
                continue
            wait = 1.0 if not pending else max(0.0, opened + self.max_s - time.monotonic())
            if pending and self._scorer_free():
                wait = max(0.0, opened + self.min_s - time.monotonic())
            await self._serve_others_or_wait(consumer, reader, state, wait)
            if app.consumer_generation_id != state.generation or not consumer.flow_active:
                continue
            took = self._take_read(consumer, reader.take(), state.reading, pending)
            if took and len(pending) == took:
                opened = time.monotonic()
            # Also when the scorer is free: a quiet stream is not held for the window.
            pending, opened = await self._close_batches(consumer, pending, opened, True)
            if self._rested is not None and self._rested is not state.nudging:
                state.nudging = self._rested
                state.nudging.add_done_callback(reader.nudge)  # wake the wait once it is scored

    async def _follow_assignment(self, consumer: Any, reader: EventReader, state: _Reading,
                                 pending: list[Incoming]) -> bool:
        """Keep the reader on the events partitions Faust made active, and those paused in
        aiokafka; False while Faust's flow is stopped (a rebalance), after waiting for it."""
        app = consumer.app
        if app.consumer_generation_id != state.generation or not consumer.flow_active:
            # A rebalance started or happened: stop reading; what was gathered is read
            # again from the committed offsets once Faust resumes the flow.
            pending.clear()
            state.generation = app.consumer_generation_id
            state.paused = frozenset()  # a new assignment in aiokafka starts unpaused
            if state.reading:
                reader.assign({})
                state.reading = frozenset()
        events_assigned = frozenset(tp for tp in consumer.assignment() if tp.topic == self.topic)
        if not events_assigned <= state.paused:
            # Before any other fetch: aiokafka drops what it fetched for them, if any.
            await self._pause_in_aiokafka(consumer, events_assigned)
            state.paused = events_assigned
        if not consumer.flow_active:
            await consumer.wait(consumer.can_resume_flow)
            return False
        active = fa.active_partitions(consumer)
        events_active = frozenset(tp for tp in active if tp.topic == self.topic)
        if events_active != state.reading:
            reader.assign(self._starts(consumer, events_active))
            state.reading = events_active
            pending.clear()
        # Changelogs being recovered (or standbys) still come through Faust; the only
        # other topic assigned, Faust's leader-election topic, carries no records.
        changelogs = app.tables.changelog_topics
        state.others = {tp for tp in active if tp.topic in changelogs}
        return True

    async def _serve_others_or_wait(self, consumer: Any, reader: EventReader, state: _Reading,
                                    wait: float) -> None:
        """Fetch the other topics through Faust (briefly if events are read too), or wait up to
        ``wait`` for the reader."""
        if state.others:
            records = await fa.fetch(consumer, state.others,
                                     min(wait, 0.005) if state.reading else wait)
            state.touched = time.monotonic()
            if records:
                await self._take(consumer, records, state.others, [])
        else:
            await reader.wait(wait)
            if time.monotonic() - state.touched > 5.0:
                await self._touch_aiokafka(consumer)
                state.touched = time.monotonic()

    @staticmethod
    def _starts(consumer: Any, tps: frozenset) -> dict[int, int | None]:
        """Where to read each partition from: where Faust sought to (the committed offset).

        Also sets Faust's read offset of each partition to that start, as its seek does.
        """
        starts: dict[int, int | None] = {}
        read, committed = fa.read_offsets(consumer), fa.committed_offsets(consumer)
        for tp in tps:
            offset = read.get(tp)
            if offset is None:
                offset = committed.get(tp)
            starts[tp.partition] = offset if offset is not None and offset >= 0 else None
            read[tp] = starts[tp.partition]
        return starts

    @staticmethod
    async def _pause_in_aiokafka(consumer: Any, tps: frozenset) -> None:
        """Stop aiokafka fetching ``tps`` (it also drops what it fetched for them)."""
        from aiokafka import TopicPartition as AioTP

        def pause(aio_consumer: Any) -> None:
            aio_consumer.pause(*(AioTP(tp.topic, tp.partition) for tp in tps))

        if tps:
            await fa.in_aiokafka(consumer, pause)

    @staticmethod
    async def _touch_aiokafka(consumer: Any) -> None:
        """Tell aiokafka the app still polls (it leaves the group after max.poll.interval)."""
        await fa.in_aiokafka(consumer, fa.touch_poll_clock)

    def _take_read(self, consumer: Any, messages: list, reading: frozenset,
                   pending: list[Incoming]) -> int:
        """Move what the reader read into ``pending`` (Faust's in-order rule, gaps recorded)."""
        if not messages:
            return 0
        app = consumer.app
        read_offset = fa.read_offsets(consumer)
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
            last = fa.read_offsets(consumer).get(tp)
            if marks is not None:
                out[tp] = max(0, marks[1] - (last + 1 if last is not None else marks[0]))
                consumer.app.monitor.track_tp_end_offset(tp, marks[1])
        return out

    async def _take(self, consumer: Any, records: dict, active: set | None,
                    pending: list[Incoming]) -> int:
        """Move the fetched events into ``pending``; other topics go through the conductor."""
        app = consumer.app
        read_offset = fa.read_offsets(consumer)
        buffered = fa.buffered_partitions(consumer)
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
        read_offset = fa.read_offsets(consumer)
        gaps = consumer.app.topics.acks_enabled_for(tp.topic)
        self.other_records += len(batch)
        for record in batch:
            offset = record.offset
            if not _next_in_order(consumer, tp, offset, read_offset[tp], gaps):
                continue
            message = fa.to_message(consumer, tp, record)
            await consumer.wait_first(consumer.callback(message), consumer.suspend_flow.wait())
            read_offset[tp] = offset

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
        start, committed = last + 1, fa.committed_offsets(consumer)[tp]
        if committed is not None:
            start = max(start, committed + 1)
        if start <= offset:
            fa.record_gap(consumer, tp, start, offset + 1)  # the end is excluded
    return True
