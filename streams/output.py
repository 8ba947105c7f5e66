"""Everything a worker writes, through one librdkafka producer, flushed once per batch.

Faust would send each table change and each output record through its own Python producer path
(about a hundred microseconds per record on this hardware, three records per event). Here a
table change goes straight to the partition's RocksDB store (``TableStore``) and its changelog
record is produced with confluent-kafka, like the recommendations, samples and dead letters. The
intake flushes this producer before it acknowledges a batch, so a batch's source offsets are
committed only after everything it wrote was acknowledged: a crash can repeat a batch but never
lose one (and user-state updates are idempotent by source offset, so a repeat changes nothing).
"""

from __future__ import annotations

import logging
import threading

import faust
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from faust.types import TP
from rocksdict import WriteBatch

from connectors.producer import DeliveryError, producer_config

log = logging.getLogger("streamrec.worker.output")

POLL_EVERY = 1000  # serve delivery callbacks every so many records, not on every produce


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
        # Faust opens (or reuses) the store of that partition; private, pinned to Faust 0.15.
        return self.table.data._db_for_partition(partition)

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
        for db in list(self.table.data._dbs.values()):
            value = db.get(raw_key)
            if value is not None:
                return value
        return None

    def put(self, key: str, value: bytes, partition: int) -> None:
        """Stage ``value`` for ``write_staged`` and produce its changelog record."""
        raw_key = key.encode()
        self._staged.setdefault(partition, {})[raw_key] = value
        self.output.produce(self.changelog, raw_key, value, partition)

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

    def __init__(self, bootstrap: str) -> None:
        # A batch's records are queued in one burst: a short linger still fills each request.
        self._producer = Producer(producer_config(bootstrap, **{
            "linger.ms": 1, "on_delivery": self._on_delivery}))
        self._lock = threading.Lock()
        self._errors: list[str] = []
        self._tables: dict[str, TableStore] = {}
        self._persisted: dict[tuple[str, int], int] = {}
        self._unpolled = 0

    def warm(self, topics: list[str], timeout_s: float = 10.0) -> None:
        """Fetch the metadata of the topics this worker writes, before the first event.

        Otherwise the first batch waits for librdkafka to look up each topic's partitions and
        leaders, which shows as a latency spike of hundreds of milliseconds after start.
        """
        for topic in topics:
            try:
                self._producer.list_topics(topic, timeout=timeout_s)
            except KafkaException as exc:  # the first produce will tell; nothing lost here
                log.warning("could not look up topic %s yet: %s", topic, exc)

    def track(self, store: TableStore) -> None:
        """Remember which changelog topic belongs to which table."""
        self._tables[store.changelog] = store

    def produce(self, topic: str, key: bytes | None, value: bytes,
                partition: int | None = None) -> None:
        """Queue one record (partitioned by key unless ``partition`` is given)."""
        if partition is None:
            self._producer.produce(topic, value, key)
        else:
            self._producer.produce(topic, value, key, partition)
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:
            self._unpolled = 0
            self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is not None:
                self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")
            elif msg.topic() in self._tables:
                slot = (msg.topic(), msg.partition())
                self._persisted[slot] = max(self._persisted.get(slot, -1), msg.offset())

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
