"""The worker's producer and events reader against the real private cluster."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.kafka.clients import consumer_config
from connectors.kafka.producer import DeliveryError
from connectors.kafka.topics import TopicSpec, ensure_topics
from streams.output import Delivery, WorkerOutput
from streams.reader import STATS_INTERVAL_MS, EventReader

pytestmark = pytest.mark.integration


def _stored(bootstrap: str, topic: str, partitions: int = 4) -> int:
    consumer = Consumer(consumer_config(bootstrap, "count"))
    try:
        return sum(
            high - low
            for low, high in (
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in range(partitions)
            )
        )
    finally:
        consumer.close()


def test_a_batch_settles_once_the_broker_has_each_of_its_records(kafka, topic_factory) -> None:
    topic = topic_factory("out")
    output = WorkerOutput(kafka.private)
    first, second = Delivery(output), Delivery(output)
    with output.counting(first):
        for i in range(500):
            output.produce(topic, f"user-{i}".encode(), b"x" * 100)
    with output.counting(second):
        output.produce(topic, b"user-x", b"y")
    output.produce(topic, b"user-y", b"z")  # outside any batch: counted by neither

    assert (first.sent, second.sent) == (500, 1)
    asyncio.run(output.settle(first))
    assert first.settled and first.reported == 500 and not first.errors
    assert _stored(kafka.private, topic) >= 500
    asyncio.run(output.settle(second))
    output.flush(30)
    assert _stored(kafka.private, topic) == 502


def test_a_batch_with_a_record_the_broker_refuses_fails_to_settle(kafka, unique) -> None:
    topic = unique("small")
    ensure_topics(kafka.private, [TopicSpec(topic, 1, {"max.message.bytes": "1000"})])
    output = WorkerOutput(kafka.private)
    batch = Delivery(output)
    with output.counting(batch):
        output.produce(topic, b"user-1", b"fine", 0)
        output.produce(topic, b"user-2", b"x" * 5000, 0)  # over the topic's limit
    # (The broker refuses the whole request the big record is in, so both may fail.)
    with pytest.raises(DeliveryError, match=r"record\(s\) failed: small-.*\[0\]: .*too large"):
        asyncio.run(output.settle(batch))
    assert batch.reported == 2


def test_the_events_reader_reads_its_partitions_from_the_given_offsets(kafka, topic_factory):
    topic = topic_factory("read")
    output = WorkerOutput(kafka.private)
    for partition in (0, 1):
        for i in range(10):
            output.produce(topic, f"user-{i}".encode(), f"{partition}:{i}".encode(), partition)
    output.flush(30)

    async def read_until(reader: EventReader, count: int) -> list[tuple[int, int]]:
        got: list[tuple[int, int]] = []
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < count and asyncio.get_running_loop().time() < deadline:
            await reader.wait(1.0)
            got += [(m.partition(), m.offset()) for m in reader.take()]
        return got

    async def go() -> None:
        reader = EventReader(kafka.private, "test-events-reader", topic)
        reader.start(asyncio.get_running_loop())
        try:
            reader.assign({0: 7, 1: None})  # 7..9 of partition 0, all of partition 1
            got = await read_until(reader, 13)
            assert sorted(got) == [(0, 7), (0, 8), (0, 9)] + [(1, o) for o in range(10)]
            reader.assign({1: 8})  # a new assignment: from here on only this
            got = await read_until(reader, 2)
            await asyncio.sleep(0.5)
            got += [(m.partition(), m.offset()) for m in reader.take()]
            assert got == [(1, 8), (1, 9)]
            await asyncio.sleep(reader_stats_s())
            assert reader.watermarks(1) == (0, 10), "high watermark from the statistics"
        finally:
            reader.stop()

    asyncio.run(go())


def reader_stats_s() -> float:
    return 2 * STATS_INTERVAL_MS / 1000


def test_a_partition_without_a_known_start_is_read_from_the_groups_committed_offset(
        kafka, topic_factory, unique):
    topic, group = topic_factory("read"), unique("group")
    output = WorkerOutput(kafka.private)
    for i in range(10):
        output.produce(topic, b"u", str(i).encode(), 0)
    output.flush(30)
    committer = Consumer(consumer_config(kafka.private, group))
    committer.commit(offsets=[TopicPartition(topic, 0, 6)], asynchronous=False)
    committer.close()

    async def go() -> list[int]:
        reader = EventReader(kafka.private, group, topic)
        reader.start(asyncio.get_running_loop())
        got: list[int] = []
        try:
            reader.assign({0: None})
            deadline = asyncio.get_running_loop().time() + 30
            while len(got) < 4 and asyncio.get_running_loop().time() < deadline:
                await reader.wait(1.0)
                got += [m.offset() for m in reader.take()]
        finally:
            reader.stop()
        return got

    assert asyncio.run(go()) == [6, 7, 8, 9], "from the committed offset, not the beginning"
