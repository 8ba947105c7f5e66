"""Model releases: the signed record the trainer publishes and the model sync trusts.

    release = signed_release(artifact, uri, Path("var/keys/trainer.key"), metrics={...})
    with ReleasePublisher(public_bootstrap, "model.releases") as publisher:
        publisher.publish(release)
    latest = read_releases(public_bootstrap, "model.releases")[-1]
    check_signature(latest, Path("var/keys/trainer.pub"))  # or SignatureError

The topic is compacted and keyed by model name, one partition, so it is the model's history in
order and, after compaction, its newest release. The publisher is transactional with a fixed
``transactional.id`` per model: a restarted trainer fences its predecessor, so two instances
never publish forked lineages, and readers use ``read_committed``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from connectors.kafka.clients import admin_config, consumer_config, producer_config
from connectors.kafka.topics import TopicSpec, ensure_topics
from connectors.releases.signing import SignatureError, sign, verify
from model.artifact import Artifact
from schemas import default_codec
from streamrec.errors import StreamrecError

log = logging.getLogger("streamrec.releases")
MODEL_NAME = "streamrec"
OFFSET_FROM, OFFSET_UNTIL = "offset_from.", "offset_until."  # metric key prefixes per partition


class ReleaseError(StreamrecError):
    """A release cannot be published or read; the message says what to do."""


@dataclass(frozen=True)
class Release:
    """One ModelRelease record (``schemas/avro/model_release.v1.avsc``)."""

    version: str
    parent_version: str | None
    artifact_uri: str
    sha256: str
    signature: bytes | None
    metrics: dict[str, float] = field(default_factory=dict)
    data_from: int | None = None
    data_until: int | None = None
    created_at: int = 0

    def to_record(self) -> dict[str, Any]:
        """The Avro record."""
        return {"version": self.version, "parent_version": self.parent_version,
                "artifact_uri": self.artifact_uri, "sha256": self.sha256,
                "signature": self.signature, "metrics": dict(self.metrics),
                "data_from": self.data_from, "data_until": self.data_until,
                "created_at": self.created_at}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Release:
        """The release of a decoded record."""
        return cls(**record)

    def offsets(self, prefix: str = OFFSET_UNTIL) -> dict[int, int]:
        """Per partition of the training topic, the offsets recorded under ``prefix``.

        ``offset_until.P`` is the first offset the release did *not* train on (where a restarted
        trainer resumes); ``offset_from.P`` is where its new data began.
        """
        return {int(k[len(prefix):]): int(v) for k, v in self.metrics.items()
                if k.startswith(prefix)}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready dict (signature as hex)."""
        out = self.to_record()
        out["signature"] = self.signature.hex() if self.signature else None
        return out


def signed_release(artifact: Artifact, uri: str, signing_key: Path,
                   metrics: dict[str, float] | None = None, data_from: int | None = None,
                   data_until: int | None = None) -> Release:
    """The release of an artifact, signed over its ``metadata_sha256`` with the trainer's key."""
    digest = str(artifact.metadata["metadata_sha256"])
    return Release(artifact.version, artifact.metadata.get("parent_version"), uri, digest,
                   sign(signing_key, digest.encode()), dict(metrics or {}), data_from,
                   data_until, int(time.time() * 1000))


def check_signature(release: Release, verify_key: Path) -> None:
    """Return if the release is signed by the trainer's key; raise SignatureError otherwise."""
    if not release.signature:
        raise SignatureError("release is not signed: only releases signed by the trainer's key "
                             f"({verify_key}) are run")
    verify(verify_key, release.sha256.encode(), release.signature)


def ensure_releases_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> None:
    """Create the releases topic (one partition, compacted) if it does not exist."""
    ensure_topics(bootstrap, [TopicSpec(topic, 1, {"cleanup.policy": "compact"})], timeout_s)


def topic_exists(bootstrap: str, topic: str, timeout_s: float = 30.0) -> bool:
    """Whether the releases topic exists yet (the trainer creates it with its first start)."""
    admin = AdminClient(admin_config(bootstrap))
    return topic in admin.list_topics(timeout=timeout_s).topics


class ReleasePublisher:
    """Publishes releases of one model in transactions; creating one fences older instances."""

    def __init__(self, bootstrap: str, topic: str, model_name: str = MODEL_NAME,
                 timeout_s: float = 30.0) -> None:
        self.topic = topic
        self.key = model_name.encode()
        self.timeout_s = timeout_s
        self._codec = default_codec()
        ensure_releases_topic(bootstrap, topic, timeout_s)
        self._producer = Producer(producer_config(
            bootstrap, **{"transactional.id": f"streamrec-trainer:{topic}:{model_name}",
                          "transaction.timeout.ms": 30_000, "message.timeout.ms": 30_000,
                          "linger.ms": 0}))
        self._producer.init_transactions(timeout_s)

    def publish(self, release: Release) -> None:
        """Write one release and commit; ReleaseError when another trainer took over."""
        try:
            self._producer.begin_transaction()
            self._producer.produce(self.topic, self._codec.encode("model_release",
                                                                  release.to_record()), self.key)
            self._producer.commit_transaction(self.timeout_s)
        except KafkaException as exc:
            err = exc.args[0]
            if err.txn_requires_abort():
                self._producer.abort_transaction(self.timeout_s)
            if err.fatal():
                raise ReleaseError(f"cannot publish release {release.version}: {err.str()} "
                                   "(another trainer of this model has started; this one "
                                   "must stop)") from None
            raise

    def close(self) -> None:
        """Flush and let go of the producer."""
        self._producer.flush(self.timeout_s)

    def __enter__(self) -> ReleasePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_releases(bootstrap: str, topic: str, model_name: str | None = MODEL_NAME,
                  timeout_s: float = 30.0) -> list[Release]:
    """Every committed release of the model (all models with ``None``), oldest first."""
    if not topic_exists(bootstrap, topic, timeout_s):
        return []
    reader = ReleaseReader(bootstrap, topic, model_name)
    try:
        return reader.read_to_end(timeout_s)
    finally:
        reader.close()


class ReleaseReader:
    """Reads a releases topic from the beginning, then follows it (``poll``)."""

    def __init__(self, bootstrap: str, topic: str, model_name: str | None = MODEL_NAME) -> None:
        """Read ``topic`` (which must exist: see ``topic_exists``); readers never create it."""
        self.topic = topic
        self.key = model_name.encode() if model_name else None
        self.undecodable = 0
        self._bootstrap = bootstrap
        self._codec = default_codec()
        # No group membership: every reader reads the whole (small, compacted) history itself.
        self._consumer = Consumer(consumer_config(bootstrap, "streamrec-releases",
                                                  **{"auto.offset.reset": "earliest"}))
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

    def poll(self, timeout_s: float) -> list[Release]:
        """The releases that arrived within ``timeout_s`` (possibly none)."""
        out = []
        for msg in self._consumer.consume(100, timeout_s):
            err = msg.error()
            if err is not None:
                if err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise KafkaException(err)
                continue
            if self.key is not None and msg.key() != self.key:
                continue
            try:
                out.append(Release.from_record(self._codec.decode("model_release", msg.value())))
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the reader
                self.undecodable += 1
                log.error("releases %s@%d: undecodable record skipped: %s", self.topic,
                          msg.offset(), exc)
        return out

    def read_to_end(self, timeout_s: float) -> list[Release]:
        """Every release up to the topic's end as of now; ReleaseError if that takes too long.

        The end is the high watermark including uncommitted records: a read that stopped at
        the last stable offset could miss the newest release behind an open transaction.
        """
        tp = TopicPartition(self.topic, 0)
        probe = Consumer(consumer_config(self._bootstrap, "streamrec-probe",
                                         **{"isolation.level": "read_uncommitted"}))
        try:
            low, end = probe.get_watermark_offsets(tp, timeout=timeout_s)
        finally:
            probe.close()
        out: list[Release] = []
        if end <= low:
            return out
        deadline = time.monotonic() + timeout_s
        while self._consumer.position([tp])[0].offset < end:
            if time.monotonic() > deadline:
                raise ReleaseError(f"could not read {self.topic} to its end ({end}) within "
                                   f"{timeout_s:.0f} s: is a release transaction left open?")
            out += self.poll(0.2)
        return out

    def close(self) -> None:
        """Close the consumer (idempotent)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None  # type: ignore[assignment]
