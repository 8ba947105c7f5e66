"""The subscriber SDK: iterate over decoded records of a topic (recommendations by default).

    for rec in Subscriber("127.0.0.1:19092", "recommendations", user_id="u-1", max_records=1):
        print(rec.value["items"])

Records are decoded with whichever streamrec schema wrote them (read from the Avro header), so one
subscriber works for every topic. Undecodable records are counted and reported, never fatal.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException

from connectors.kafka.clients import consumer_config
from connectors.kafka.errors import kafka_unavailable
from schemas import Codec, DecodeError, default_codec


@dataclass(frozen=True, slots=True)
class Received:
    """One decoded record with where it came from."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # Kafka timestamp, ms
    key: bytes | None
    schema: str  # e.g. "recommendation"
    value: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict: the record's fields plus ``_topic``/``_partition``/``_offset``."""
        out = {k: _jsonable(v) for k, v in self.value.items()}
        out.update(_topic=self.topic, _partition=self.partition, _offset=self.offset)
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class Subscriber:
    """Iterates over a topic's records; stops after ``max_records`` or ``idle_timeout_s`` quiet."""

    def __init__(
        self,
        bootstrap: str,
        topic: str = "recommendations",
        *,
        user_id: str | None = None,
        from_beginning: bool = False,
        max_records: int | None = None,
        idle_timeout_s: float | None = None,
        group_id: str | None = None,
        codec: Codec | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.topic = topic
        self.bootstrap = bootstrap
        self.user_key = user_id.encode() if user_id is not None else None
        self.max_records = max_records
        self.idle_timeout_s = idle_timeout_s
        self.codec = codec or default_codec()
        self.should_stop = should_stop
        self.undecodable = 0
        self.last_error: str | None = None
        # Without a group the subscription is anonymous: a fresh group that commits nothing.
        self._commit = group_id is not None
        self._consumer = Consumer(consumer_config(
            bootstrap, group_id or f"streamrec-subscribe-{uuid.uuid4().hex[:12]}", **{
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "enable.auto.commit": self._commit,
            }))
        self._consumer.subscribe([topic])

    def __iter__(self) -> Iterator[Received]:
        count = 0
        last_seen = time.monotonic()
        try:
            while self.max_records is None or count < self.max_records:
                if self.should_stop is not None and self.should_stop():
                    return
                msg = self._consumer.poll(0.2)
                if msg is None:
                    if self.idle_timeout_s is not None and (
                        time.monotonic() - last_seen > self.idle_timeout_s
                    ):
                        return
                    continue
                last_seen = time.monotonic()
                if msg.error():
                    self._raise_if_fatal(msg.error())
                    continue
                if self.user_key is not None and msg.key() != self.user_key:
                    continue
                received = self._decode(msg)
                if received is not None:
                    count += 1
                    yield received
        finally:
            self.close()

    def _decode(self, msg: Any) -> Received | None:
        try:
            writer = self.codec.writer_of(msg.value())
            value = self.codec.decode(writer.name, msg.value())
        except DecodeError as exc:
            self.undecodable += 1
            self.last_error = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}: {exc}"
            return None
        return Received(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1],
                        msg.key(), writer.name, value)

    def _raise_if_fatal(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise kafka_unavailable(KafkaException(err), f"read {self.topic!r} from "
                                    f"{self.bootstrap}", "is the cluster running (streamrec "
                                    "broker status), and is the topic name right?")

    def close(self) -> None:
        """Leave the group (idempotent)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None  # type: ignore[assignment]
