"""Resolve what to replay into per-partition offset ranges, by time or by offsets.

Times are resolved with the broker's offsets-for-times lookup (the first offset whose timestamp
is at or after the time), so a time range is a range of log positions: with client-set
timestamps that are out of order, a record inside the positions may carry a time outside the
range. Ranges are half-open, ``[start, end)``, and never reach past the last committed offset.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from connectors.kafka.clients import admin_config, consumer_config
from connectors.kafka.errors import kafka_errors, kafka_unavailable
from streamrec.errors import ConfigError

Watermarks = dict[int, tuple[int, int]]  # partition -> (low, high): first and next offset


class RangeError(ConfigError):
    """A range that cannot be replayed as asked (no such topic or partition, no records)."""


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """Offsets ``[start, end)`` of one partition."""

    partition: int
    start: int
    end: int

    @property
    def count(self) -> int:
        """Offsets in the range (records, unless markers or compaction left gaps)."""
        return self.end - self.start


@dataclass(frozen=True)
class ReplayRange:
    """The offsets to replay from one topic, per partition, and the topic's partition count."""

    topic: str
    partition_count: int
    partitions: tuple[PartitionRange, ...]

    @property
    def total(self) -> int:
        """Offsets in every partition's range."""
        return sum(r.count for r in self.partitions)

    def as_dict(self) -> dict[int, tuple[int, int]]:
        """``{partition: (start, end)}``, as a checkpoint stores it."""
        return {r.partition: (r.start, r.end) for r in self.partitions}

    @classmethod
    def from_dict(cls, topic: str, partition_count: int,
                  ranges: dict[int, tuple[int, int]]) -> ReplayRange:
        """The inverse of ``as_dict``."""
        return cls(topic, partition_count,
                   tuple(PartitionRange(p, s, e) for p, (s, e) in sorted(ranges.items())))


def offset_range(topic: str, wanted: dict[int, tuple[int, int | None]],
                 watermarks: Watermarks) -> ReplayRange:
    """Check offset ranges (``end=None``: to the end) against the partitions' watermarks."""
    parts = []
    for partition, (start, end) in sorted(wanted.items()):
        if partition not in watermarks:
            raise RangeError(f"topic {topic!r} has partitions 0-{len(watermarks) - 1}; "
                             f"there is no partition {partition}")
        low, high = watermarks[partition]
        end = high if end is None else end
        if start < low:
            raise RangeError(
                f"partition {partition} of {topic!r} now starts at offset {low} (older records "
                f"were deleted by retention); start at {low} or later")
        if end > high:
            raise RangeError(
                f"partition {partition} of {topic!r} ends at offset {high - 1} (next offset "
                f"{high}); end at {high - 1} or earlier, or write {partition}:{start}- to "
                "replay to the end")
        parts.append(PartitionRange(partition, start, end))
    return ReplayRange(topic, len(watermarks), tuple(parts))


def time_range(topic: str, starts: dict[int, int], ends: dict[int, int],
               watermarks: Watermarks) -> ReplayRange:
    """Ranges from offsets-for-times answers (-1: no record that late) and watermarks."""
    parts = []
    for partition, (low, high) in sorted(watermarks.items()):
        start = high if starts[partition] < 0 else max(starts[partition], low)
        end = high if ends[partition] < 0 else min(ends[partition], high)
        parts.append(PartitionRange(partition, min(start, end), end))
    return ReplayRange(topic, len(watermarks), tuple(parts))


def partition_count(bootstrap: str, topic: str, timeout_s: float = 15.0) -> int | None:
    """How many partitions ``topic`` has, or None when it does not exist."""
    try:
        # Listing every topic (not asking for one) cannot trigger auto-creation.
        topics = AdminClient(admin_config(bootstrap)).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise kafka_unavailable(exc, f"list the topics of {bootstrap}") from None
    meta = topics.topics.get(topic)
    if meta is None or meta.error is not None:
        return None
    return len(meta.partitions)


def _require_partitions(bootstrap: str, topic: str) -> int:
    count = partition_count(bootstrap, topic)
    if count is None:
        raise RangeError(f"topic {topic!r} does not exist on {bootstrap}; check the name and "
                         "--cluster")
    return count


def _probe(bootstrap: str) -> Consumer:
    # Read committed (the consumer default): the high watermark is then the last stable offset,
    # so a range never ends inside an open transaction.
    return Consumer(consumer_config(bootstrap, f"streamrec-replay-probe-{uuid.uuid4().hex[:12]}"))


# A topic created a moment ago can be in the metadata before its partitions have a leader.
_NOT_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
            KafkaError.UNKNOWN_TOPIC_OR_PART}


def watermarks(consumer: Consumer, topic: str, partitions: int,
               timeout_s: float = 15.0) -> Watermarks:
    """``{partition: (low, high)}`` of a topic, asked of the broker.

    Asked again while a partition has no leader yet, until ``timeout_s`` has passed.
    """
    deadline = time.monotonic() + timeout_s
    marks = {}
    for p in range(partitions):
        while True:
            left = deadline - time.monotonic()
            try:
                marks[p] = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                          timeout=max(0.1, left))
                break
            except KafkaException as exc:
                if exc.args[0].code() not in _NOT_YET or left <= 0:
                    raise
                time.sleep(0.1)
    return marks


@kafka_errors("read the offsets of {topic!r} on {bootstrap}")
def resolve_offset_range(bootstrap: str, topic: str,
                         wanted: dict[int, tuple[int, int | None]]) -> ReplayRange:
    """Offset ranges as given, checked against what the topic holds now."""
    count = _require_partitions(bootstrap, topic)
    consumer = _probe(bootstrap)
    try:
        return offset_range(topic, wanted, watermarks(consumer, topic, count))
    finally:
        consumer.close()


@kafka_errors("look up the offsets of {topic!r} by time on {bootstrap}")
def resolve_time_range(bootstrap: str, topic: str, since_ms: int, until_ms: int,
                       timeout_s: float = 15.0) -> ReplayRange:
    """Every partition's offsets of records written from ``since_ms`` until before ``until_ms``."""
    if since_ms >= until_ms:
        raise RangeError("the time range is empty: --since must be before --until")
    count = _require_partitions(bootstrap, topic)
    consumer = _probe(bootstrap)
    try:
        marks = watermarks(consumer, topic, count, timeout_s)
        starts = _offsets_for_time(consumer, topic, count, since_ms, timeout_s)
        ends = _offsets_for_time(consumer, topic, count, until_ms, timeout_s)
    finally:
        consumer.close()
    return time_range(topic, starts, ends, marks)


def _offsets_for_time(consumer: Consumer, topic: str, partitions: int, ms: int,
                      timeout_s: float) -> dict[int, int]:
    asked = [TopicPartition(topic, p, ms) for p in range(partitions)]
    answer = consumer.offsets_for_times(asked, timeout=timeout_s)
    for tp in answer:
        if tp.error is not None:
            raise RangeError(f"offsets-for-times failed for {topic}[{tp.partition}]: {tp.error}")
    return {tp.partition: tp.offset for tp in answer}


@kafka_errors("read the record times of {topic!r} on {bootstrap}")
def time_extent(bootstrap: str, topic: str, timeout_s: float = 15.0) -> tuple[int, int] | None:
    """Earliest and latest record timestamps (ms) in ``topic``, or None when it holds none."""
    count = _require_partitions(bootstrap, topic)
    admin = AdminClient(admin_config(bootstrap))
    found: list[int] = []
    # The broker answers both with the timestamp of the record it found (-1 when none).
    for spec in (OffsetSpec.for_timestamp(0), OffsetSpec.max_timestamp()):
        asked = {TopicPartition(topic, p): spec for p in range(count)}
        answers = admin.list_offsets(asked, request_timeout=timeout_s)
        found.extend(f.result().timestamp for f in answers.values())
    times = [t for t in found if t >= 0]
    return (min(times), max(times)) if times else None
