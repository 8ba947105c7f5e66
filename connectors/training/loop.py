"""The incremental trainer (public side): train.samples in, signed model releases out.

    train.samples ──▶ SampleBuffer (dedup by sample_id, per-pseudonym order by seq)
        every W new clicks or T seconds: window = new data + replay of older users
        ──▶ warm-start from the current release, grow the vocabulary, train, export
        ──▶ candidate and current scored on the held-out newest clicks (HR@10, NDCG@10)
        ──▶ release rule (``model.incremental.release_decision``)
        ──▶ store <model_store>/<version>/ (a directory or s3://; connectors.releases.store)
        ──▶ ModelRelease (signed) on the releases topic

The releases topic is the trainer's only state. Each release records, per partition of the
training topic, where its new data began (``offset_from.P``) and the first offset it did not
train on (``offset_until.P``). On start the trainer fences any older instance (transactional
publisher), reads its newest release, rebuilds the replay buffer from the samples before those
offsets and continues after them: a restart neither skips nor repeats data, and a held-back
candidate's data stays pending for the next window. The held-out clicks of a window are the
newest share of its new clicks; they are trained on in the next window.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from connectors.kafka.clients import consumer_config
from connectors.kafka.errors import kafka_errors
from connectors.releases.records import (
    MODEL_NAME,
    OFFSET_FROM,
    OFFSET_UNTIL,
    Release,
    ReleasePublisher,
    read_releases,
    signed_release,
)
from connectors.releases.store import ArtifactStore
from model.artifact import Artifact, load_artifact
from model.config import ModelConfig, TrainConfig
from model.incremental import Comparison, SampleBuffer, compare, release_decision, train_candidate
from schemas import DecodeError, default_codec
from schemas.records import TrainingSample
from streamrec.errors import ConfigError

log = logging.getLogger("streamrec.trainer")


@dataclass(frozen=True)
class TrainerConfig:
    """Where samples come from and releases go, the model's shape and the window rules."""

    public_bootstrap: str
    train_topic: str
    releases_topic: str
    store: ArtifactStore  # where artifacts are exported (``staging``) and released (``put``)
    signing_key: Path
    model: ModelConfig  # shape of a model started from scratch (n_items is filled in)
    train: TrainConfig  # optimisation of one window (``epochs`` = passes per window)
    model_name: str = MODEL_NAME
    init_from: Path | None = None  # start from this artifact when nothing was released yet
    window_clicks: int = 2000  # train when this many new clicks arrived...
    window_seconds: float = 60.0  # ...or this long after the first of them
    min_clicks: int = 50  # never train a window on fewer new clicks
    holdout_share: float = 0.2  # newest share of the new clicks kept out for the comparison
    replay_ratio: float = 1.0  # users of older data mixed in per user with new data
    tolerance: float = 0.0  # NDCG@10 a candidate may lose and still count as not worse
    device: str = "cpu"  # torch device of the training: auto, cpu or cuda
    timeout_s: float = 30.0


class TrainerError(ConfigError):
    """The trainer cannot continue from what it found; the message says what to do."""


@dataclass
class TrainerStats:
    """What one run did (read it from another thread while it runs)."""

    consumed: int = 0
    duplicates: int = 0
    undecodable: int = 0
    windows: int = 0
    released: list[str] = field(default_factory=list)
    held_back: list[tuple[str, str]] = field(default_factory=list)  # (version, reason)
    window_seconds: list[float] = field(default_factory=list)
    resumed_from: dict[int, int] = field(default_factory=dict)


class Trainer:
    """Follows the training topic and releases models; ``stop()`` ends ``run``."""

    def __init__(self, config: TrainerConfig) -> None:
        self.config = config
        self.stats = TrainerStats()
        self.buffer = SampleBuffer(config.model.max_query_tokens)
        self._codec = default_codec()
        self._stop = threading.Event()
        self._current: Artifact | None = None
        self._generation = 0
        self._until: dict[int, int] = {}  # partition -> first offset not in the current model
        self._arrival = 0  # records consumed so far (duplicates too), numbering the buffer
        self._base = 0  # first arrival not trained into the current model
        self._positions: list[tuple[int, int, int]] = []  # (arrival, partition, offset) >= base
        self._new_clicks: list[int] = []  # arrivals of new clicks >= base
        self._since_attempt = 0  # new clicks since the last window
        self._first_at: float | None = None  # when the first of those arrived

    def stop(self) -> None:
        """Ask ``run`` to end after the current step."""
        self._stop.set()

    @kafka_errors("train from {self.config.train_topic!r} on {self.config.public_bootstrap}",
                  "is the public cluster running (streamrec broker status)?")
    def run(self, max_windows: int | None = None, idle_exit_s: float | None = None
            ) -> TrainerStats:
        """Train windows until stopped, ``max_windows`` are done, or idle for ``idle_exit_s``."""
        c = self.config
        c.store.check()  # a missing bucket or refused credentials fail now, not after a window
        with ReleasePublisher(c.public_bootstrap, c.releases_topic, c.model_name,
                              c.timeout_s) as publisher:
            self._restore(read_releases(c.public_bootstrap, c.releases_topic, c.model_name,
                                        c.timeout_s))
            consumer = self._consumer(self._until)
            try:
                self._loop(consumer, publisher, max_windows, idle_exit_s)
            finally:
                consumer.close()
        return self.stats

    def _loop(self, consumer: Consumer, publisher: ReleasePublisher, max_windows: int | None,
              idle_exit_s: float | None) -> None:
        last_record = time.monotonic()
        while not self._stop.is_set():
            msgs = consumer.consume(1000, 0.5)
            # A window closes at its W-th click exactly, even in the middle of a batch; the
            # rest of the batch belongs to the next window.
            for msg in [*msgs, None]:
                if msg is not None:
                    self._take(msg)
                if self._window_due(time.monotonic()):
                    self._window(publisher)
                if max_windows is not None and self.stats.windows >= max_windows:
                    return
            now = time.monotonic()
            last_record = now if msgs else last_record
            if (idle_exit_s is not None and now - last_record >= idle_exit_s
                    and self._since_attempt < self.config.min_clicks):
                log.info("no new samples for %.0f s: stopping", idle_exit_s)
                return

    def _window_due(self, now: float) -> bool:
        """W new clicks since the last window, or T seconds since the first (at least min)."""
        c = self.config
        if self._since_attempt >= c.window_clicks:
            return True
        return (self._since_attempt >= c.min_clicks and self._first_at is not None
                and now - self._first_at >= c.window_seconds)

    def _take(self, msg: Message) -> None:
        """Add one consumed record to the buffer as new data."""
        err = msg.error()
        if err is not None:
            if err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise KafkaException(err)
            return
        arrival = self._arrival
        self._arrival += 1
        self.stats.consumed += 1
        self._positions.append((arrival, int(msg.partition() or 0), int(msg.offset() or 0)))
        sample = self._decode(msg)
        if sample is None:
            return
        if not self.buffer.add(sample, arrival):
            self.stats.duplicates += 1
        elif sample.type == "click":
            self._new_clicks.append(arrival)
            self._since_attempt += 1
            self._first_at = self._first_at or time.monotonic()

    def _decode(self, msg: Message) -> TrainingSample | None:
        try:
            return self._codec.read(TrainingSample, msg.value())
        except DecodeError as exc:
            self.stats.undecodable += 1
            log.error("%s[%d]@%d skipped: %s", msg.topic(), msg.partition(), msg.offset(), exc)
            return None

    def _restore(self, releases: list[Release]) -> None:
        """Start from the newest release (or ``init_from``) and rebuild the replay buffer."""
        if releases:
            latest = releases[-1]
            self._current = load_artifact(self.config.store.local_path(latest.artifact_uri,
                                                                       latest.version))
            self._generation = int(latest.metrics.get("generation", len(releases)))
            self._until = latest.offsets(OFFSET_UNTIL)
            log.info("resuming after release %s (generation %d) at offsets %s",
                     latest.version, self._generation, self._until)
        elif self.config.init_from is not None:
            self._current = load_artifact(self.config.init_from)
            log.info("no release yet: starting from %s", self._current.version)
        buckets = self.config.model.n_query_buckets
        if self._current is not None and self._current.config.n_query_buckets != buckets:
            raise TrainerError(
                f"model {self._current.version} reads {self._current.config.n_query_buckets} "
                f"search buckets, the samples carry {buckets} (STREAMREC_TOKEN_BUCKETS): "
                "start from a model of the same bucket count")
        self.stats.resumed_from = dict(self._until)
        for msg in self._history(self._until):
            sample = self._decode(msg)
            if sample is not None:
                self.buffer.add(sample, self._arrival)
            self._arrival += 1
        self._base = self._arrival

    def _history(self, until: dict[int, int]) -> Iterator[Message]:
        """The samples before ``until`` (already in the current model), partition by partition."""
        todo = {p: o for p, o in until.items() if o > 0}
        if not todo:
            return
        consumer = Consumer(self._consumer_config())
        try:
            for partition, end in todo.items():
                tp = TopicPartition(self.config.train_topic, partition, 0)
                consumer.assign([tp])
                deadline = time.monotonic() + self.config.timeout_s
                while (consumer.position([tp])[0].offset or 0) < end:
                    msgs = consumer.consume(1000, 0.5)
                    if msgs:
                        deadline = time.monotonic() + self.config.timeout_s
                    elif time.monotonic() > deadline:
                        raise KafkaException(KafkaError(
                            KafkaError._TIMED_OUT, f"{tp.topic}[{partition}] ended before "
                            f"offset {end}, which the last release trained through"))
                    yield from (m for m in msgs if m.error() is None and (m.offset() or 0) < end)
        finally:
            consumer.close()

    def _consumer(self, start: dict[int, int]) -> Consumer:
        """A consumer of every partition of the training topic, positioned after ``start``."""
        consumer = Consumer(self._consumer_config())
        meta = consumer.list_topics(self.config.train_topic, timeout=self.config.timeout_s)
        topic = meta.topics.get(self.config.train_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            consumer.close()
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                            f"training topic {self.config.train_topic} not found"))
        consumer.assign([TopicPartition(self.config.train_topic, p, start.get(p, 0))
                         for p in sorted(topic.partitions)])
        return consumer

    def _consumer_config(self) -> dict:
        # Partitions are assigned by hand and positions live in the releases: no group offsets
        # (the consumer default). Read committed (the default too): the mirror writes in
        # transactions; aborted copies must not be trained.
        # Small fetches per partition: a backlog is then read round-robin in small steps, close
        # to time order across partitions, instead of one partition's whole history first.
        return consumer_config(self.config.public_bootstrap,
                               f"streamrec-trainer:{self.config.model_name}",
                               **{"auto.offset.reset": "earliest",
                                  "max.partition.fetch.bytes": 32_768})

    def _window(self, publisher: ReleasePublisher) -> None:
        """Train, compare and maybe release one window; then reset the window's counters."""
        started = time.monotonic()
        c = self.config
        n_hold = math.ceil(c.holdout_share * len(self._new_clicks)) if c.holdout_share else 0
        cut = self._new_clicks[-n_hold] if n_hold else self._arrival
        users = self.buffer.active_since(self._base)
        rng = np.random.default_rng(c.train.seed + self._generation)
        replay = self.buffer.replay_users(math.ceil(c.replay_ratio * len(users)), set(users), rng)
        seqs, contexts = self.buffer.sequences(users + replay, before=cut)
        version = f"v{self._generation + 1:05d}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        out = c.store.staging(version)
        tc = dataclasses.replace(c.train, seed=c.train.seed + self._generation)
        span = self.buffer.time_range(self._base, cut)
        candidate = train_candidate(self._current, seqs, contexts, c.model, tc, out, {
            "version": version,
            "training_data": {"source": f"kafka:{c.train_topic}", "new_clicks": self._trained(cut),
                              "users": len(users), "replay_users": len(replay),
                              "first_event": span[0] if span else None,
                              "last_event": span[1] if span else None},
            "query_hashing": {"n_buckets": c.model.n_query_buckets, "key_fingerprint": None},
        }, c.device)
        compared = compare(candidate, self._current, self.buffer.heldout(cut),
                           "cpu" if c.device == "cpu" else "auto")
        decision = release_decision(compared.candidate, compared.current, compared.new_items,
                                    c.tolerance)
        self.stats.windows += 1
        self._since_attempt, self._first_at = 0, None
        if decision.release:
            self._release(publisher, candidate, cut, span, compared, decision.reason,
                          {"started": started, "users": len(users), "replay": len(replay)})
        else:
            log.warning("candidate %s held back (%s): held-out NDCG@10 %.4f, current %.4f, "
                        "%d new items", version, decision.reason,
                        compared.candidate.get("NDCG@10", float("nan")),
                        (compared.current or {}).get("NDCG@10", float("nan")),
                        compared.new_items)
            shutil.rmtree(out, ignore_errors=True)
            self.stats.held_back.append((version, decision.reason))
        self.stats.window_seconds.append(round(time.monotonic() - started, 2))

    def _trained(self, cut: int) -> int:
        return sum(1 for a in self._new_clicks if a < cut)

    def _release(self, publisher: ReleasePublisher, candidate: Artifact, cut: int,
                 span: tuple[int, int] | None, compared: Comparison, reason: str,
                 window: dict[str, float]) -> None:
        """Publish the candidate's release and move the trained-through position to ``cut``."""
        until = dict(self._until)
        for arrival, partition, offset in self._positions:
            if arrival < cut:
                until[partition] = max(until.get(partition, 0), offset + 1)
        metrics: dict[str, float] = {
            "generation": self._generation + 1, "heldout_cases": compared.cases,
            "new_items": compared.new_items, "items": len(candidate.item_ids) - 1,
            "new_clicks": self._trained(cut), "train_users": window["users"],
            "replay_users": window["replay"], f"rule.{reason}": 1.0,
            "released_for_new_items": float(reason == "new_items"),
            "window_seconds": round(time.monotonic() - window["started"], 2),
        }
        metrics |= {k.lower(): v for k, v in compared.candidate.items()}
        metrics |= {f"current.{k.lower()}": v for k, v in (compared.current or {}).items()}
        metrics |= {f"{OFFSET_FROM}{p}": self._until.get(p, 0) for p in until}
        metrics |= {f"{OFFSET_UNTIL}{p}": o for p, o in until.items()}
        uri = self.config.store.put(candidate.path, candidate.version)
        release = signed_release(candidate, uri, self.config.signing_key, metrics,
                                 *(span or (None, None)))
        publisher.publish(release)
        log.info("released %s (%s): held-out HR@10 %.4f NDCG@10 %.4f on %d cases, %d new items",
                 release.version, reason, metrics.get("hr@10", float("nan")),
                 metrics.get("ndcg@10", float("nan")), compared.cases, compared.new_items)
        if self._current is not None:
            self.config.store.discard_local(self._current.path)  # an s3 store's local copy
        self._current, self._generation, self._until, self._base = candidate, \
            self._generation + 1, until, cut
        self._positions = [p for p in self._positions if p[0] >= cut]
        self._new_clicks = [a for a in self._new_clicks if a >= cut]
        self.stats.released.append(release.version)

