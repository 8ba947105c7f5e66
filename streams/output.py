"""Everything a worker writes, through one librdkafka producer, settled once per batch.

Faust would send each table change and each output record through its own Python producer path
(about a hundred microseconds per record on this hardware, three records per event). Here a
table change goes straight to the partition's RocksDB store (``TableStore``) and its changelog
record is produced with confluent-kafka, like the recommendations, samples and dead letters. Each
batch's records are counted by a ``Delivery``, and the intake acknowledges a batch only once the
broker has acknowledged every record the batch wrote, so its source offsets are committed only
after everything it wrote is stored: a crash can repeat a batch but never lose one (and
user-state updates are idempotent by source offset, so a repeat changes nothing).

Why not ``Producer.flush()`` per batch: flush waits until the producer's whole queue is empty,
so under a steady stream it also waits for the records of the batches behind (which keep
arriving), and a flushing thread must take the GIL back for every delivery report while the
event loop holds it. Delivery reports are served on the event loop's thread instead
(``poll(0)``, which never blocks), and a batch waits only for its own records.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import faust
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from faust.types import TP
from rocksdict import WriteBatch

from connectors.kafka.clients import producer_config
from connectors.kafka.producer import DeliveryError, ProducerId
from streams.faust_adapter import table_database, table_databases

log = logging.getLogger("streamrec.worker.output")

POLL_EVERY = 1000  # serve delivery callbacks every so many records, not on every produce
SETTLE_POLL_S = 0.002  # how often a batch waiting for its acknowledgements serves reports


class Delivery:
    """The records one batch produced, counted until the broker has acknowledged each of them.

    It is the delivery callback of each of those records. Records are counted when queued and
    when reported; a batch is settled once every queued record was reported (successfully or
    not: ``errors`` says which failed).
    """

    __slots__ = ("output", "sent", "reported", "errors")

    def __init__(self, output: WorkerOutput) -> None:
        self.output = output
        self.sent = 0
        self.reported = 0
        self.errors: list[str] = []

    @property
    def settled(self) -> bool:
        return self.reported >= self.sent

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        self.reported += 1
        self.output._on_delivery(err, msg, self.errors)


class TableStore:
    """A Faust table's per-partition RocksDB stores (rocksdict), read and written directly.

    Keys and values are the bytes Faust itself stores for a table with raw serializers, so
    Faust's changelog recovery and its HTTP reads see exactly what we write.
    """

    def __init__(self, table: faust.Table, output: WorkerOutput) -> None:
        self.table = table
        self.output = output
        self.changelog = table.changelog_topic_name
        self._staged: dict[int, dict[bytes, bytes]] = {}
        output.track(self)

    def _db(self, partition: int):  # noqa: ANN202 - rocksdict.Rdict
        return table_database(self.table, partition)  # Faust opens (or reuses) it

    def get(self, key: str, partition: int) -> bytes | None:
        """The stored (or staged) value of ``key`` in ``partition`` (None if absent)."""
        raw_key = key.encode()
        staged = self._staged.get(partition)
        if staged is not None and raw_key in staged:
            return staged[raw_key]
        return self._db(partition).get(raw_key)

    def find(self, key: str) -> bytes | None:
        """The value of ``key`` in whichever of this worker's partitions holds it."""
        raw_key = key.encode()
        for db in table_databases(self.table):
            value = db.get(raw_key)
            if value is not None:
                return value
        return None

    def put(self, key: str, value: bytes, partition: int) -> None:
        """Stage ``value`` for ``write_staged`` and produce its changelog record."""
        raw_key = key.encode()
        # Produced first: a record the producer refuses (too large) is not staged either.
        self.output.produce(self.changelog, raw_key, value, partition)
        self._staged.setdefault(partition, {})[raw_key] = value

    def write_staged(self) -> None:
        """Write what ``put`` staged, one RocksDB write batch per partition.

        A write batch costs less than half of separate puts (one WAL append instead of one per
        key). Callers write before they next yield to the event loop, so no rebalance can close
        a partition's store in between, and readers over HTTP see a whole batch or none of it.
        """
        staged, self._staged = self._staged, {}
        for partition, values in staged.items():
            batch = WriteBatch(raw_mode=True)  # Faust opens its rocksdict stores in raw mode
            for raw_key, value in values.items():
                batch.put(raw_key, value)
            self._db(partition).write(batch)


class WorkerOutput:
    """Produces the worker's records and keeps table changelog offsets in step."""

    def __init__(self, bootstrap: str, logger: logging.Logger | None = None) -> None:
        # A batch's records are queued in one burst: a short linger still fills each request.
        self._id = ProducerId()
        self._producer = Producer(producer_config(bootstrap, **{
            "linger.ms": 1, "on_delivery": self._on_delivery, **self._id.config(),
            **({"logger": logger} if logger is not None else {})}))
        self._lock = threading.Lock()
        self._errors: list[str] = []
        self._tables: dict[str, TableStore] = {}
        self._persisted: dict[tuple[str, int], int] = {}
        self._unpolled = 0
        self.batch: Delivery | None = None  # what ``produce`` counts records against

    @contextmanager
    def counting(self, batch: Delivery) -> Iterator[Delivery]:
        """Count the records produced inside the block against ``batch`` (see ``settle``).

        The block must not yield to the event loop: another batch's block could run in between.
        """
        previous, self.batch = self.batch, batch
        try:
            yield batch
        finally:
            self.batch = previous

    def warm(self, topics: list[str], timeout_s: float = 10.0) -> None:
        """Fetch the metadata of the topics this worker writes and the producer id, before
        the first event (nothing may be produced meanwhile: callbacks run in this thread).

        Otherwise the first batch waits for librdkafka to look up each topic's partitions and
        leaders, and perhaps half a second for the producer id (see ``ProducerId``), which
        shows as a latency spike of hundreds of milliseconds after start.
        """
        for topic in topics:
            try:
                self._producer.list_topics(topic, timeout=timeout_s)
            except KafkaException as exc:  # the first produce will tell; nothing lost here
                log.warning("could not look up topic %s yet: %s", topic, exc)
        if not self._id.wait(self._producer, timeout_s):
            log.warning("no producer id after %.0f s; the first batch will wait for it",
                        timeout_s)

    def track(self, store: TableStore) -> None:
        """Remember which changelog topic belongs to which table."""
        self._tables[store.changelog] = store

    def produce(self, topic: str, key: bytes | None, value: bytes,
                partition: int | None = None) -> None:
        """Queue one record (partitioned by key unless ``partition`` is given).

        The record counts against the batch being counted (``counting``), if there is one.
        """
        batch = self.batch
        # -1: librdkafka's "unassigned", the partitioner picks by key.
        self._producer.produce(topic, value, key, -1 if partition is None else partition,
                               on_delivery=self._on_delivery if batch is None else batch)
        if batch is not None:
            batch.sent += 1
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:
            self._unpolled = 0
            self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message,
                     errors: list[str] | None = None) -> None:
        with self._lock:
            if err is not None:
                (self._errors if errors is None else errors).append(
                    f"{msg.topic()}[{msg.partition()}]: {err.str()}")
            elif msg.topic() in self._tables:
                slot = (msg.topic(), msg.partition())
                self._persisted[slot] = max(self._persisted.get(slot, -1), msg.offset())

    async def settle(self, batch: Delivery, timeout_s: float = 60.0) -> None:
        """Wait until the broker has acknowledged every record of ``batch``; raise if any failed.

        Delivery reports are served on the calling (event loop) thread every two milliseconds
        while the batch waits; other coroutines run in between.
        """
        poll = self._producer.poll
        deadline = time.monotonic() + timeout_s
        poll(0)
        while not batch.settled:
            if time.monotonic() > deadline:
                raise DeliveryError(f"{batch.sent - batch.reported} record(s) of a batch were "
                                    f"not acknowledged within {timeout_s:.0f} s")
            await asyncio.sleep(SETTLE_POLL_S)
            poll(0)
        if batch.errors:
            raise DeliveryError(f"{len(batch.errors)} record(s) failed: "
                                f"{'; '.join(batch.errors[:3])}")

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until everything produced so far is acknowledged; raise if anything failed."""
        remaining = self._producer.flush(timeout_s)
        with self._lock:
            errors, self._errors = self._errors, []
        if remaining or errors:
            raise DeliveryError(f"{len(errors)} record(s) failed, {remaining} unsent after "
                                f"{timeout_s:.0f} s: {'; '.join(errors[:3])}")

    def persist_offsets(self) -> None:
        """Record in each RocksDB partition how far its changelog is (Faust reads it at start)."""
        with self._lock:
            done, self._persisted = self._persisted, {}
        for (topic, partition), offset in done.items():
            self._tables[topic].table.data.set_persisted_offset(TP(topic, partition), offset)
