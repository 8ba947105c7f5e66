"""Every use streamrec makes of a Faust, mode or aiokafka internal, in one place.

Faust 0.15 has no public hook for what the worker does instead of its per-record path (see
``streams.intake``): draining a fetch result a batch at a time, acknowledging a batch, pausing
the events partitions in aiokafka while librdkafka reads them, or writing a table's RocksDB
directly (``streams.output``). Those need the consumer's offset bookkeeping, its aiokafka
thread and the table store's databases, which are private. Each function here names the internal
it touches; ``INTERNALS`` lists them all, and ``tests/streams/test_faust_adapter.py`` checks each
against the installed versions, so an upgrade that renames or removes one fails that test with
the name, not the worker at run time. Nothing else in streamrec touches a private attribute of
those libraries.

Pinned versions this was written against: faust-streaming 0.15.3, aiokafka 0.14.0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import faust
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

# (where, attribute): a class (module path) and the attribute it, or its instances, must have.
INTERNALS: tuple[tuple[str, str], ...] = (
    ("faust.transport.consumer:Consumer", "_drain_messages"),
    ("faust.transport.consumer:Consumer", "_wait_next_records"),
    ("faust.transport.consumer:Consumer", "_getmany"),
    ("faust.transport.consumer:Consumer", "_get_active_partitions"),
    ("faust.transport.consumer:Consumer", "_to_message"),
    ("faust.transport.consumer:Consumer", "_new_offset"),
    ("faust.transport.consumer:Consumer", "_read_offset"),
    ("faust.transport.consumer:Consumer", "_committed_offset"),
    ("faust.transport.consumer:Consumer", "_acked"),
    ("faust.transport.consumer:Consumer", "_acked_index"),
    ("faust.transport.consumer:Consumer", "_gap"),
    ("faust.transport.consumer:Consumer", "_n_acked"),
    ("faust.transport.consumer:Consumer", "_commit_every"),
    ("faust.transport.consumer:Consumer", "_unacked_messages"),
    ("faust.transport.consumer:Consumer", "_waiting_for_ack"),
    ("faust.transport.consumer:Consumer", "_buffered_partitions"),
    ("faust.transport.drivers.aiokafka:Consumer", "_thread"),
    ("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread", "_ensure_consumer"),
    ("faust.transport.drivers.aiokafka:Producer", "_ensure_producer"),
    ("mode.services:Service", "_stopped"),
    ("faust.app.base:App", "_new_consumer"),
    ("faust.app.base:App", "_consumer"),
    ("faust.stores.rocksdb:Store", "_dbs"),
    ("faust.stores.rocksdb:Store", "_db_for_partition"),
    ("aiokafka.consumer.consumer:AIOKafkaConsumer", "_subscription"),
    ("aiokafka.consumer.subscription_state:SubscriptionState", "fetch_context"),
)


# --- the app -------------------------------------------------------------------------------

class IntakeApp(faust.App):
    """A Faust app whose consumer drains through ``intake`` (a ``BatchIntake``) once attached."""

    intake: Any = None

    def _new_consumer(self) -> Any:  # internal: App._new_consumer
        consumer = super()._new_consumer()
        if self.intake is not None:
            self.intake.install(consumer)
        return consumer


def consumer_built(app: faust.App) -> bool:
    """Whether Faust already built the app's consumer (internal: ``App._consumer``)."""
    return app._consumer is not None


def aiokafka_producer(app: faust.App) -> Any:
    """Faust's aiokafka producer, started if needed (internal: ``Producer._ensure_producer``)."""
    return app.producer._ensure_producer()


# --- the consumer's drain loop and fetching ------------------------------------------------

def install_drain(consumer: Any, drain: Callable[[Any], Any]) -> None:
    """Make Faust's fetcher run ``drain`` instead of its per-record loop."""
    consumer._drain_messages = drain


def stopped(service: Any) -> Callable[[], bool]:
    """The "has it stopped" test of a mode service (the consumer, the fetcher)."""
    return service._stopped.is_set


async def wait_next_records(consumer: Any, timeout: float) -> tuple[Any, Any]:
    """Faust's next fetch result and the partitions it was fetched for."""
    return await consumer._wait_next_records(timeout)


def active_partitions(consumer: Any) -> set[TP]:
    """The partitions Faust fetches now (assigned and not paused by its flow control)."""
    return consumer._get_active_partitions()


async def fetch(consumer: Any, partitions: set[TP], timeout: float) -> dict:
    """One fetch of ``partitions`` through Faust's aiokafka client."""
    return await consumer._getmany(active_partitions=partitions, timeout=timeout)


def buffered_partitions(consumer: Any) -> set[TP]:
    """Partitions whose fetched records Faust still buffers."""
    return consumer._buffered_partitions


def to_message(consumer: Any, tp: TP, record: Any) -> Any:
    """The Faust message of a fetched aiokafka record (for Faust's per-record path)."""
    return consumer._to_message(tp, record)


async def in_aiokafka(consumer: Any, call: Callable[[Any], None]) -> None:
    """Run ``call(aiokafka_consumer)`` on the thread that owns Faust's aiokafka consumer."""
    thread = consumer._thread
    await thread.call_thread(call, thread._ensure_consumer())


def touch_poll_clock(aio_consumer: Any) -> None:
    """Tell aiokafka the app still polls (it leaves the group after max.poll.interval)."""
    with aio_consumer._subscription.fetch_context():
        pass


# --- offsets: what was read, acknowledged and committed -------------------------------------

def read_offsets(consumer: Any) -> dict[TP, int | None]:
    """The last offset Faust read of each partition (mutable: the intake advances it)."""
    return consumer._read_offset


def committed_offsets(consumer: Any) -> dict[TP, int | None]:
    """The offset Faust last committed of each partition."""
    return consumer._committed_offset


def record_gap(consumer: Any, tp: TP, start: int, end: int) -> None:
    """Offsets ``start..end-1`` of ``tp`` carry no record to acknowledge (as ``_add_gap``)."""
    consumer._gap[tp].addi(start, end)


def acknowledge(consumer: Any, offsets: dict[TP, Iterable[int]]) -> None:
    """Acknowledge processed offsets, as ``Consumer.ack`` does one message at a time."""
    with ack_lock:
        for tp, batch in offsets.items():
            committed = consumer._committed_offset[tp]
            index = consumer._acked_index[tp]
            fresh = [o for o in batch if (committed is None or o >= committed) and o not in index]
            index.update(fresh)
            consumer._acked[tp].extend(fresh)
            consumer._n_acked += len(fresh)


def commit_due(consumer: Any) -> bool:
    """True (and the count restarted) once ``broker_commit_every`` offsets were acknowledged."""
    every = consumer._commit_every
    if every is not None and consumer._n_acked >= every:
        consumer._n_acked = 0
        return True
    return False


def hold(consumer: Any, token: Any) -> None:
    """Count ``token`` as an unacknowledged message: Faust waits for it before it closes the
    tables of revoked partitions and before it stops."""
    consumer._unacked_messages.add(token)


def release(consumer: Any, token: Any) -> None:
    """Stop counting ``token`` and wake whoever waits for the unacknowledged set to empty."""
    consumer._unacked_messages.discard(token)
    notify(consumer._waiting_for_ack)


# --- table stores ---------------------------------------------------------------------------

def table_databases(table: faust.Table) -> list[Any]:
    """The open RocksDB (rocksdict) databases of a table, one per partition held."""
    return list(table.data._dbs.values())


def table_database(table: faust.Table, partition: int) -> Any:
    """The RocksDB database of one partition of a table (opened if needed)."""
    return table.data._db_for_partition(partition)
