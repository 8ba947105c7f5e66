"""Replay history: resolve a range of a topic, read it in order, copy it with origin headers.

    rng = resolve_time_range(bootstrap, "events", since_ms, until_ms)
    reader = RangeReader(bootstrap, rng)
    with TargetWriter(bootstrap, "events.replay") as writer:
        report = copy_range(reader, writer)

The three parts are separate so other jobs reuse them: ``RangeReader.batches()`` yields the
records of a resolved range (state rebuild feeds them to the workers), and ``copy_range`` takes a
``transform`` callback (a backfill can turn each event into an anonymised sample). Every copied
record carries headers naming its origin (topic, partition, offset, timestamp), so any copy can
be audited or deduplicated record by record.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, cast

from confluent_kafka import Consumer, KafkaError, TopicPartition

from connectors.kafka.clients import consumer_config
from connectors.kafka.errors import kafka_errors
from connectors.replay.ranges import (
    PartitionRange,
    RangeError,
    ReplayRange,
    resolve_offset_range,
    resolve_time_range,
)
from connectors.replay.writer import ReplayError, TargetWriter

ORIGIN_TOPIC = "streamrec.origin.topic"
ORIGIN_PARTITION = "streamrec.origin.partition"
ORIGIN_OFFSET = "streamrec.origin.offset"
ORIGIN_TIMESTAMP = "streamrec.origin.timestamp"
DEFAULT_BATCH = 10_000
PACED_BATCHES_PER_S = 20  # a capped replay sends small batches often rather than bursts
_STOPPING = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
             KafkaError._UNKNOWN_PARTITION, KafkaError.TOPIC_AUTHORIZATION_FAILED}

__all__ = ["ORIGIN_OFFSET", "ORIGIN_PARTITION", "ORIGIN_TIMESTAMP", "ORIGIN_TOPIC", "CopyReport",
           "OutRecord", "PartitionRange", "RangeError", "RangeReader", "Record", "ReplayError",
           "ReplayRange", "TargetWriter", "Throttle", "Transform", "copy_range",
           "resolve_offset_range", "resolve_time_range"]


class Record(Protocol):
    """What replay uses of a consumed ``confluent_kafka.Message`` that is a record."""

    def error(self) -> KafkaError | None: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def timestamp(self) -> tuple[int, int]: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


class RangeReader:
    """Reads the records of a resolved range in batches, each partition in offset order."""

    def __init__(self, bootstrap: str, rng: ReplayRange, *, positions: dict[int, int] | None = None,
                 group_id: str | None = None, batch_size: int = DEFAULT_BATCH,
                 poll_timeout_s: float = 0.2) -> None:
        self.range = rng
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self._ends = {r.partition: r.end for r in rng.partitions}
        # Next offset to read per partition; equal to the range's end once a partition is done.
        self.positions = {r.partition: r.start for r in rng.partitions}
        for partition, offset in (positions or {}).items():
            self.positions[partition] = max(self.positions[partition],
                                            min(offset, self._ends[partition]))
        self._active = {p for p, pos in self.positions.items() if pos < self._ends[p]}
        # Offsets are committed by the writer's transactions, under this group, if any (no
        # auto commit: the consumer default). Read committed (the default too): records of
        # aborted transactions are never replayed.
        self._consumer = Consumer(consumer_config(
            bootstrap, group_id or f"streamrec-replay-{uuid.uuid4().hex[:12]}", **{
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,  # how a range that ends at the log's end is noticed
                "auto.offset.reset": "error",  # a deleted start offset must fail, not skip/rewind
            }))
        self._consumer.assign([TopicPartition(rng.topic, p, self.positions[p])
                               for p in sorted(self._active)])

    @property
    def remaining(self) -> int:
        """Offsets left to read (an upper bound: markers and compacted gaps hold no records)."""
        return sum(self._ends[p] - pos for p, pos in self.positions.items())

    def batches(self) -> Iterator[list[Record]]:
        """Yield lists of in-range records (possibly empty while waiting) until every range ends.

        ``positions`` already counts a batch's records when it is yielded.
        """
        consume, ends, positions = self._consumer.consume, self._ends, self.positions
        while self._active:
            batch = []
            # Typed as Record: the client's stubs make partition/offset optional for events.
            for msg in cast(list[Record], consume(self.batch_size, self.poll_timeout_s)):
                err = msg.error()
                if err is not None:
                    self._on_event(msg, err)
                    continue
                partition, offset = msg.partition(), msg.offset()
                if offset >= ends[partition]:
                    self._finish(partition)
                    continue
                batch.append(msg)
                positions[partition] = offset + 1
                if offset + 1 == ends[partition]:
                    self._finish(partition)  # done now, rather than at the next poll's timeout
            yield batch

    def _on_event(self, msg: Record, err: KafkaError) -> None:
        partition = msg.partition()
        if err.code() == KafkaError._PARTITION_EOF:
            # Records after the last data record may be transaction markers or aborted records.
            if msg.offset() >= self._ends[partition]:
                self._finish(partition)
            return
        if err.code() == KafkaError._AUTO_OFFSET_RESET:
            raise ReplayError(
                f"partition {partition} of {self.range.topic!r} no longer holds offset "
                f"{self.positions[partition]}: retention deleted it before it was replayed. "
                "Start a new replay over the records that are left.")
        if err.fatal() or err.code() in _STOPPING:
            raise ReplayError(f"reading {self.range.topic!r} failed: {err.str()}")
        # Anything else (a broker restarting, a leader moving) librdkafka retries by itself.

    def _finish(self, partition: int) -> None:
        if partition in self._active:
            self._active.discard(partition)
            self.positions[partition] = self._ends[partition]
            self._consumer.pause([TopicPartition(self.range.topic, partition)])

    def group_metadata(self) -> object:
        """The consumer group metadata transactions commit the read positions under."""
        return self._consumer.consumer_group_metadata()

    def close(self) -> None:
        """Close the consumer (commits nothing)."""
        self._consumer.close()


@dataclass(slots=True)
class OutRecord:
    """A record a transform wants written; ``partition=-1`` lets the key choose (murmur2)."""

    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    partition: int = -1


Transform = Callable[[Record], OutRecord | None]  # None drops the record


@dataclass
class CopyReport:
    """What a copy read and wrote."""

    read: int = 0
    written: int = 0
    dropped: int = 0
    commits: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Records read per second."""
        return self.read / self.seconds if self.seconds > 0 else 0.0


class Throttle:
    """Keeps a batch loop at ``rate`` records per second on average (sleeps when ahead)."""

    def __init__(self, rate: float, max_credit_s: float = 0.1) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.max_credit_s = max_credit_s
        self._due = time.monotonic()

    def __call__(self, count: int) -> None:
        """Account for ``count`` records just sent; sleep until they are within the rate."""
        now = time.monotonic()
        # After a stall (a slow commit, an empty poll) bank at most a little credit, so the
        # loop does not burst far above the rate to catch up.
        self._due = max(self._due, now - self.max_credit_s) + count / self.rate
        if self._due > now:
            time.sleep(self._due - now)


@kafka_errors("copy {reader.range.topic!r} to {writer.topic!r}")
def copy_range(reader: RangeReader, writer: TargetWriter, *, transform: Transform | None = None,
               keep_partitions: bool = True, rate: float | None = None,
               commit_interval_s: float = 1.0,
               on_commit: Callable[[dict[int, int]], None] | None = None,
               on_progress: Callable[[int], None] | None = None) -> CopyReport:
    """Copy every record of ``reader``'s range to ``writer``, adding origin headers.

    Without ``transform`` each record keeps its key, value and headers, and its partition when
    ``keep_partitions`` (else the key picks one). ``writer.commit`` runs every
    ``commit_interval_s`` and at the end; ``on_commit`` then gets the positions it covered.
    With ``rate``, batches shrink to a twentieth of a second's worth, so the pace is even.
    """
    throttle = Throttle(rate) if rate else None
    if rate:
        reader.batch_size = max(1, min(reader.batch_size, int(rate / PACED_BATCHES_PER_S)))
    topic = reader.range.topic
    metadata = reader.group_metadata() if writer.transactional else None
    report, started = CopyReport(), time.monotonic()
    last_commit = started

    def commit(more: bool) -> None:
        positions = dict(reader.positions)
        writer.commit(topic, positions, metadata, more=more)
        report.commits += 1
        if on_commit is not None:
            on_commit(positions)

    for batch in reader.batches():
        if transform is None:
            _copy_batch(batch, writer, topic.encode(), keep_partitions)
            report.written += len(batch)
        else:
            written = _transform_batch(batch, writer, topic.encode(), transform)
            report.written += written
            report.dropped += len(batch) - written
        report.read += len(batch)
        writer.poll()
        if on_progress is not None and batch:
            on_progress(len(batch))
        if throttle is not None and batch:
            throttle(len(batch))
        if time.monotonic() - last_commit >= commit_interval_s:
            commit(more=True)
            last_commit = time.monotonic()
    commit(more=False)
    report.seconds = time.monotonic() - started
    return report


def _origin(topic: bytes, msg: Record) -> list[tuple[str, bytes]]:
    return [(ORIGIN_TOPIC, topic), (ORIGIN_PARTITION, b"%d" % msg.partition()),
            (ORIGIN_OFFSET, b"%d" % msg.offset()), (ORIGIN_TIMESTAMP, b"%d" % msg.timestamp()[1])]


def _copy_batch(batch: list[Record], writer: TargetWriter, topic: bytes, keep: bool) -> None:
    """The hot loop: one produce call per record, no per-record polling."""
    write = writer.write
    for msg in batch:
        headers = msg.headers()
        origin = _origin(topic, msg)
        write(msg.value(), msg.key(), msg.partition() if keep else -1,
              headers + origin if headers else origin)


def _transform_batch(batch: list[Record], writer: TargetWriter, topic: bytes,
                     transform: Transform) -> int:
    written = 0
    for msg in batch:
        out = transform(msg)
        if out is None:
            continue
        origin = _origin(topic, msg)
        writer.write(out.value, out.key, out.partition,
                     out.headers + origin if out.headers else origin)
        written += 1
    return written
