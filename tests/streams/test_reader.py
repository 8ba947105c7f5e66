"""The events reader's hand-over to the event loop, and the intake's rule for what it read.

No broker: records are handed over as the reader thread would (``_arrive``), and the consumer is
only Faust's bookkeeping. The reader against a real broker is in
tests/integration/test_worker_output.py, and the whole path in tests/integration/test_worker.py.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from confluent_kafka import KafkaError, Message
from faust.types import TP

from streams.intake import BatchIntake
from streams.reader import EventReader, ReaderError, _usable
from tests.streams.test_intake import Bookkeeping

TOPIC = "events"


def message(partition: int, offset: int, key: bytes = b"u") -> Message:
    return Message(topic=TOPIC, partition=partition, offset=offset, key=key, value=b"v",
                   timestamp=(1, 1000 + offset))


@pytest.fixture
def reader():
    # Nothing listens on port 9: the consumer is never polled here, and logs go to a logger.
    made = EventReader("127.0.0.1:9", "test-reader", TOPIC, max_buffered=4,
                       config={"logger": logging.getLogger("test-reader")})
    yield made
    made.stop()


def test_records_of_an_older_assignment_are_dropped(reader: EventReader) -> None:
    async def go() -> None:
        reader.attach(asyncio.get_running_loop())
        reader.assign({0: None})
        old = reader.generation
        reader._arrive(old, [message(0, 0)])
        reader.assign({0: 0, 1: 5})  # drops what arrived and was not taken
        assert reader.take() == []
        reader._arrive(old, [message(0, 1)])  # read before the thread saw the new orders
        reader._arrive(reader.generation, [message(1, 5), message(1, 6)])
        assert [(m.partition(), m.offset()) for m in reader.take()] == [(1, 5), (1, 6)]
        assert reader.assigned == {0: 0, 1: 5}

    asyncio.run(go())


def test_the_thread_stops_polling_while_too_much_waits_in_hand(reader: EventReader) -> None:
    async def go() -> None:
        reader.attach(asyncio.get_running_loop())
        reader.assign({0: None})
        reader._arrive(reader.generation, [message(0, o) for o in range(3)])
        assert reader._room.is_set()
        reader._arrive(reader.generation, [message(0, 3)])
        assert not reader._room.is_set(), "4 records in hand with max_buffered=4"
        assert len(reader.take()) == 4
        assert reader._room.is_set()

    asyncio.run(go())


def test_wait_returns_when_records_arrive_or_after_the_timeout(reader: EventReader) -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        reader.attach(loop)
        reader.assign({0: None})
        started = loop.time()
        await reader.wait(0.05)
        assert loop.time() - started >= 0.04, "nothing arrived: it waited for the timeout"
        loop.call_later(0.01, reader._arrive, reader.generation, [message(0, 0)])
        started = loop.time()
        await reader.wait(5.0)
        assert loop.time() - started < 1.0
        loop.call_later(0.01, reader.nudge)
        reader.take()
        started = loop.time()
        await reader.wait(5.0)
        assert loop.time() - started < 1.0, "a nudge ends the wait too"

    asyncio.run(go())


def test_a_failed_thread_makes_take_raise(reader: EventReader) -> None:
    reader.error = RuntimeError("broker gone for good")
    with pytest.raises(ReaderError, match="broker gone for good"):
        reader.take()


def test_error_events_are_skipped_and_fatal_ones_raise() -> None:
    assert _usable(message(0, 1))
    transient = Message(topic=TOPIC, partition=0, error=KafkaError(KafkaError._TRANSPORT))
    assert not _usable(transient)
    fatal = Message(topic=TOPIC, partition=0,
                    error=KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    with pytest.raises(ReaderError, match="fatal"):
        _usable(fatal)


class App:
    class topics:  # noqa: N801 - stands for app.topics
        @staticmethod
        def acks_enabled_for(topic: str) -> bool:
            return True

    class monitor:  # noqa: N801 - stands for app.monitor
        stream_inbound_time: dict = {}


def consumer_at(read: dict[TP, int | None]) -> Bookkeeping:
    consumer = Bookkeeping()
    consumer.app = App()
    consumer._read_offset = dict(read)
    return consumer


def test_read_records_are_taken_in_order_from_the_read_position() -> None:
    p0, p1, p2 = TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2)
    consumer = consumer_at({p0: 5, p1: None})
    intake = BatchIntake(TOPIC, lambda batch: None, lambda _: None, 10, 5.0)
    pending: list = []
    took = intake._take_read(
        consumer,
        [message(0, 4),  # below where partition 0 is read from: already processed
         message(0, 5), message(1, 0), message(0, 6),
         message(2, 0)],  # not a partition this worker reads (any more)
        frozenset({p0, p1}), pending)
    assert took == 3
    assert [(m.partition, m.offset, m.timestamp) for m in pending] == [
        (0, 5, 1005), (1, 0, 1000), (0, 6, 1006)]
    assert consumer._read_offset == {p0: 6, p1: 0}
    assert p2 not in consumer._read_offset
    assert not consumer._gap[p0]


def test_skipped_offsets_are_recorded_as_a_gap_so_commits_move_past_them() -> None:
    p0 = TP(TOPIC, 0)
    consumer = consumer_at({p0: 5})
    intake = BatchIntake(TOPIC, lambda batch: None, lambda _: None, 10, 5.0)
    pending: list = []
    # 6 and 7 are not records (say, transaction markers): offset 8 follows 5.
    intake._take_read(consumer, [message(0, 5), message(0, 8)], frozenset({p0}), pending)
    BatchIntake._ack(consumer, pending)
    assert consumer.new_offset(p0) == 9, "the commit covers the skipped offsets"


def test_starts_are_where_faust_sought_to() -> None:
    p0, p1, p2 = TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2)
    consumer = consumer_at({p0: 7, p1: None})
    consumer._committed_offset[p1] = 3
    starts = BatchIntake._starts(consumer, frozenset({p0, p1, p2}))
    assert starts == {0: 7, 1: 3, 2: None}  # None: where the group committed (reader.assign)
