"""Typed records, one class per Avro schema: what the code passes around instead of dicts.

    rec = Recommendation("u1", [("i9", 0.93)], "v3", "model", "e7", 1700000000000, ..., ...)
    data = codec.write(rec)                    # the schema is the class's SCHEMA
    codec.read(Recommendation, data) == rec    # and back

``to_record`` gives the dict fastavro writes, ``from_record`` takes the dict it reads. The
fields, their order and their meaning are the schema's (``schemas/avro/<name>.v*.avsc``, where
each field's ``doc`` is); ``tests/schemas/test_records.py`` checks each class against its schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar


class _Record:
    """What every typed record does (its dataclass fields are the schema's fields)."""

    SCHEMA: ClassVar[str]

    def to_record(self) -> dict[str, Any]:
        """The dict the codec writes."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Any:
        """The typed record of a dict the codec read (fields the class lacks are ignored)."""
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Recommendation(_Record):
    """The current top-K items for one user (topic ``recommendations``, keyed by user id)."""

    SCHEMA: ClassVar[str] = "recommendation"

    user_id: str
    items: Sequence[tuple[str, float]]  # (item id, score), best first
    model_version: str  # or "popularity"
    strategy: str  # "model" or "popularity"
    cause_event_id: str
    cause_event_time: int  # ms since epoch
    cause_ingest_time: int  # Kafka timestamp of the cause, ms
    produced_at: int  # ms

    def to_record(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "items": [{"item_id": i, "score": float(s)} for i, s in self.items],
            "model_version": self.model_version, "strategy": self.strategy,
            "cause_event_id": self.cause_event_id, "cause_event_time": self.cause_event_time,
            "cause_ingest_time": self.cause_ingest_time, "produced_at": self.produced_at,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Recommendation:
        return cls(record["user_id"], [(i["item_id"], i["score"]) for i in record["items"]],
                   record["model_version"], record.get("strategy", "model"),
                   record["cause_event_id"], record["cause_event_time"],
                   record["cause_ingest_time"], record["produced_at"])


@dataclass(frozen=True, slots=True)
class DeadLetter(_Record):
    """A record that could not be used, with where it came from and why (topic ``events.dlq``).

    Build one with ``connectors.kafka.dead_letters.dead_letter``, which cuts key and value to
    fit one Kafka message.
    """

    SCHEMA: ClassVar[str] = "dead_letter"

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    stage: str  # decode, validate, process, write, input, mirror
    reason: str
    error_type: str
    failed_at: int  # ms
    source: str = ""
    truncated: bool = False
    key_size: int = -1
    value_size: int = -1


@dataclass(frozen=True, slots=True)
class TrainingSample(_Record):
    """An anonymised event: the only record kind that may cross to the public cloud.

    Made by ``connectors.privacy.anonymizer.Anonymizer.anonymize``, checked by its
    ``violation`` before the mirror lets it cross.
    """

    SCHEMA: ClassVar[str] = "training_sample"

    sample_id: str  # keyed hash of the event id
    pseudonym: str  # keyed hash of the user id
    key_version: int
    type: str  # click or search
    item_id: str | None = None  # clicks only
    query_buckets: Sequence[int] = field(default_factory=list)  # searches only
    time_bucket: int = 0  # ms, coarsened
    seq: int = 0  # the event's position in its user's stream

    def to_record(self) -> dict[str, Any]:
        return {"sample_id": self.sample_id, "pseudonym": self.pseudonym,
                "key_version": self.key_version, "type": self.type, "item_id": self.item_id,
                "query_buckets": list(self.query_buckets), "time_bucket": self.time_bucket,
                "seq": self.seq}
