"""Records to Kafka with librdkafka: idempotent, delivery reported, every failure counted.

``RecordProducer`` is what the SDK's event producer and the benchmarks build on; it and every
other streamrec producer (the mirror, releases, replays, the worker's output) take their settings
from ``producer_config`` (``connectors.kafka.clients``, re-exported here): ``enable.idempotence``
and ``acks=all``, so retries never duplicate or reorder a key's records within a partition.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from connectors.kafka.clients import producer_config
from streamrec.errors import ClusterUnreachable


class DeliveryError(ClusterUnreachable):
    """Some records were not acknowledged by the broker."""


DeliveryCallback = Callable[[KafkaError | None, Message], None]


STATS_INTERVAL_MS = 100  # how often librdkafka reports its state (``ProducerId`` reads it)


class ProducerId:
    """Knows when an idempotent librdkafka producer has its producer id (the ``stats_cb``).

    An idempotent producer holds its first records until the broker gave it a producer id. When
    its first metadata answer arrives before its broker connection is up, librdkafka asks again
    only after 500 ms, so the first records of a fresh producer (stamped when queued) can reach
    the broker half a second late. That happened to 1 in 3 fresh producers on this machine.
    ``wait`` lets a caller that cares (a paced stream, a worker about to take events) hold its
    first record until the id is there.
    """

    def __init__(self) -> None:
        self.assigned = threading.Event()

    def __call__(self, stats: str) -> None:
        if not self.assigned.is_set():
            if json.loads(stats).get("eos", {}).get("idemp_state") == "Assigned":
                self.assigned.set()

    def config(self) -> dict[str, Any]:
        """The producer settings that feed this object."""
        return {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self}

    def wait(self, producer: Producer, timeout_s: float = 10.0) -> bool:
        """Serve ``producer``'s callbacks until it has its id (True) or ``timeout_s`` passed.

        Only for a producer with nothing in flight: delivery callbacks run in this thread.
        """
        deadline = time.monotonic() + timeout_s
        while not self.assigned.is_set() and time.monotonic() < deadline:
            producer.poll(0.01)
        return self.assigned.is_set()


class RecordProducer:
    """Produces already-encoded records and counts deliveries; the base of the typed producers."""

    def __init__(self, bootstrap: str, on_delivery: DeliveryCallback | None = None,
                 **config: Any) -> None:
        self._id = ProducerId()
        self._producer = Producer(producer_config(bootstrap, **{**self._id.config(), **config}))
        self._user_callback = on_delivery
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0
        self.errors: list[str] = []

    def produce(self, topic: str, key: bytes | None, value: bytes,
                headers: list[tuple[str, bytes]] | None = None,
                timestamp: int | None = None) -> None:
        """Queue one record; waits for queue space instead of failing when the queue is full."""
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": self._on_delivery}
        if headers:
            kwargs["headers"] = headers
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: serve callbacks, then retry
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is None:
                self.delivered += 1
            else:
                self.failed += 1
                if len(self.errors) < 20:
                    self.errors.append(f"{msg.topic()}: {err.str()}")
        if self._user_callback is not None:
            self._user_callback(err, msg)

    def look_up(self, topic: str, timeout_s: float = 10.0) -> None:
        """Be ready to send to ``topic`` at once: its partitions and leaders, the producer id.

        Records are stamped when they are queued, so without this the first ones of a paced
        stream wait out the metadata round trip and the producer id (see ``ProducerId``) and
        look up to half a second late. Call it before the first record.
        """
        self._producer.list_topics(topic, timeout=timeout_s)
        if not self._id.wait(self._producer, timeout_s):
            raise DeliveryError(f"the producer got no producer id from {topic!r}'s cluster "
                                f"within {timeout_s:.0f} s. Is the cluster reachable?")

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every queued record; raise DeliveryError if any failed or are still queued."""
        remaining = self._producer.flush(timeout_s)
        if remaining or self.failed:
            detail = "; ".join(self.errors[:5])
            raise DeliveryError(
                f"{self.failed} record(s) failed and {remaining} still queued after "
                f"{timeout_s:.0f} s. Is the cluster reachable? {detail}"
            )

    def __enter__(self) -> RecordProducer:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.flush()
        else:
            self._producer.flush(10)  # best effort; the original error wins
