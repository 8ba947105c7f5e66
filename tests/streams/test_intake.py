"""The batch intake's staging and acknowledgements, against Faust's own commit arithmetic.

No broker: the consumer here holds only the bookkeeping Faust's ``Consumer`` keeps, and offsets
to commit are computed by Faust's real ``Consumer._new_offset``. The intake's path through a
real broker (crash, rebalance, hot swap) is covered by tests/integration/test_worker.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from weakref import WeakSet

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from intervaltree import IntervalTree

from streams.intake import BatchIntake
from streams.pipeline import Incoming

TOPIC = "events"


class Bookkeeping:
    """The attributes of Faust's consumer that acknowledging and committing use."""

    _commit_every = None

    def __init__(self, committed: dict[TP, int] | None = None) -> None:
        self._committed_offset = defaultdict(lambda: None, committed or {})
        self._acked = defaultdict(list)
        self._acked_index = defaultdict(set)
        self._gap = defaultdict(IntervalTree)
        self._n_acked = 0
        self._unacked_messages = WeakSet()
        self._waiting_for_ack = None

    def new_offset(self, tp: TP) -> int | None:
        return FaustConsumer._new_offset(self, tp)  # type: ignore[arg-type]


def records(partition: int, offsets: range) -> list[Incoming]:
    return [Incoming(b"u", b"v", TOPIC, partition, o, 0) for o in offsets]


def run_batches(intake: BatchIntake, consumer: Bookkeeping, batches: list[list[Incoming]]):
    intake.ready.set()

    async def go() -> None:
        try:
            for batch in batches:
                await intake._process(consumer, batch)
            while intake._in_flight:
                await intake._in_flight.popleft()
        finally:  # let every batch finish (or fail) before the loop closes
            await asyncio.gather(*intake._in_flight, intake._done, return_exceptions=True)

    asyncio.run(go())


def test_batches_are_scored_and_settled_in_order_and_acknowledged_after_settling() -> None:
    consumer = Bookkeeping()
    log: list[str] = []

    def handler(batch: list[Incoming]):
        first = batch[0].offset
        log.append(f"stage1 {first}")

        async def rest() -> int:
            await asyncio.sleep(0.01 if first == 0 else 0)  # the first is slowest to score
            log.append(f"rest {first}")
            return first

        return rest()

    async def settle(first: int) -> None:
        await asyncio.sleep(0.01 if first == 10 else 0)  # the second is slowest to settle
        assert first not in consumer._acked_index[TP(TOPIC, 0)], "acked before it settled"
        log.append(f"settle {first}")

    intake = BatchIntake(TOPIC, handler, settle, max_records=10, max_ms=5)
    run_batches(intake, consumer, [records(0, range(0, 10)), records(0, range(10, 20)),
                                   records(0, range(20, 25))])
    rests = [line for line in log if line.startswith("rest")]
    assert rests == ["rest 0", "rest 10", "rest 20"]
    settled = [line for line in log if line.startswith("settle")]
    assert settled == ["settle 0", "settle 10", "settle 20"]
    assert log.index("stage1 10") < log.index("rest 0"), "batch 2 waited for batch 1's scoring"
    assert consumer.new_offset(TP(TOPIC, 0)) == 25
    assert not consumer._unacked_messages


def test_a_failed_batch_and_those_after_it_are_not_acknowledged() -> None:
    consumer = Bookkeeping()

    def handler(batch: list[Incoming]):
        async def rest() -> None:
            if batch[0].offset == 10:
                raise RuntimeError("scorer failed")

        return rest()

    async def settle(_: object) -> None:
        return None

    intake = BatchIntake(TOPIC, handler, settle, max_records=10, max_ms=5)
    with pytest.raises(RuntimeError, match="scorer failed"):
        run_batches(intake, consumer, [records(0, range(0, 10)), records(0, range(10, 20)),
                                       records(0, range(20, 30))])
    # Only the batch before the failure may be committed; the rest is read again on restart.
    assert consumer.new_offset(TP(TOPIC, 0)) == 10
    assert not consumer._unacked_messages


def test_acknowledgements_respect_committed_offsets_and_repeats() -> None:
    tp = TP(TOPIC, 1)
    consumer = Bookkeeping(committed={tp: 5})
    BatchIntake._ack(consumer, records(1, range(3, 9)))  # 3 and 4 are below the commit
    BatchIntake._ack(consumer, records(1, range(6, 9)))  # a repeat of 6..8 counts once
    assert consumer._n_acked == 4
    assert consumer.new_offset(tp) == 9


def test_a_hole_in_the_acknowledged_offsets_holds_the_commit_back() -> None:
    tp = TP(TOPIC, 2)
    consumer = Bookkeeping()
    BatchIntake._ack(consumer, records(2, range(0, 4)) + records(2, range(6, 9)))
    assert consumer.new_offset(tp) == 4  # 4 and 5 were never processed: not committed past


def test_no_batch_is_processed_before_the_worker_is_ready() -> None:
    consumer = Bookkeeping()
    handled: list[int] = []

    def handler(batch: list[Incoming]):
        handled.append(batch[0].offset)

        async def rest() -> None:
            return None

        return rest()

    async def settle(_: object) -> None:
        return None

    intake = BatchIntake(TOPIC, handler, settle, max_records=10, max_ms=5)

    async def go() -> None:
        processing = asyncio.ensure_future(intake._process(consumer, records(0, range(0, 10))))
        await asyncio.sleep(0.05)
        assert handled == [], "a batch was handled before the output was warm"
        intake.ready.set()
        await processing
        await intake._done

    asyncio.run(go())
    assert handled == [0]
    assert consumer.new_offset(TP(TOPIC, 0)) == 10


@pytest.mark.parametrize("min_ms", [0.0, 20.0])
def test_an_idle_scorer_closes_a_batch_early_but_not_before_min_ms(min_ms: float) -> None:
    consumer = Bookkeeping()
    taken: list[int] = []

    def handler(batch: list[Incoming]):
        taken.append(len(batch))

        async def rest() -> None:
            return None

        return rest()

    async def settle(_: object) -> None:
        return None

    intake = BatchIntake(TOPIC, handler, settle, max_records=10, max_ms=50, min_ms=min_ms)
    intake.ready.set()

    async def go() -> None:
        now = time.monotonic()
        left, _ = await intake._close_batches(consumer, records(0, range(3)), now, True)
        assert (taken, len(left)) == (([3], 0) if min_ms == 0 else ([], 3))
        await asyncio.gather(*intake._in_flight)  # scored: the scorer is idle again
        taken.clear()
        left, _ = await intake._close_batches(consumer, records(0, range(3, 6)), now - 0.021,
                                              True)
        assert (taken, left) == ([3], [])
        await asyncio.gather(*intake._in_flight)
        taken.clear()
        busy = asyncio.get_running_loop().create_future()  # a batch being scored
        intake._rested = busy
        left, _ = await intake._close_batches(consumer, records(0, range(6, 9)), now - 0.021,
                                              True)
        assert (taken, len(left)) == ([], 3)  # not while scoring, before max_ms
        left, _ = await intake._close_batches(consumer, left, now - 0.051, True)
        assert (taken, left) == ([3], [])  # max_ms passed: closed whatever the scorer does
        busy.set_result(None)
        await asyncio.gather(*intake._in_flight)

    asyncio.run(go())


def test_faust_checks_for_stalled_streams_only_the_topics_it_reads_itself() -> None:
    """Faust's check would log an ERROR every 2.5 s for the events (the intake takes them)
    and for a table's changelog (written, not read, once recovered)."""
    from types import SimpleNamespace

    checked: list[str] = []
    consumer = SimpleNamespace(
        verify_event_path=lambda now, tp: checked.append(tp.topic),
        app=SimpleNamespace(tables=SimpleNamespace(changelog_topics={"recs", "app-state"})))
    BatchIntake(TOPIC, lambda batch: None, lambda _: None, 10, 5.0).install(consumer)
    for topic in (TOPIC, "recs", "app-state", "app-__assignor-__leader"):
        consumer.verify_event_path(0.0, TP(topic, 0))
    assert checked == ["app-__assignor-__leader"]
