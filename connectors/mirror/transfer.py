"""Copy anonymised samples from the private cluster to the public one, exactly once, checked.

    private  samples.anon ──consume──▶ check ──ok──▶ [public transaction: records + progress]
                                         └──bad──▶ samples.anon.dlq (private; never crosses)

Exactly once across two clusters: a Kafka transaction cannot span clusters, so the mirror keeps its
source position on the *public* side. Each transaction of the public producer holds one batch of
samples and, in a compacted progress topic, the next source offset of every partition it read.
Both become visible together or not at all. On start the mirror fences any older instance
(``init_transactions`` on the same ``transactional.id`` aborts its open transaction), reads the
committed progress and seeks the private consumer there: after a crash (``kill -9``) the batch that
was in flight is read again and written again, and the aborted first copy is invisible to
``read_committed`` readers. Nothing is committed on the private cluster.

Only topics on the allow-list are mirrored, only records that decode as TrainingSample and pass
``Anonymizer.violation``; they are re-encoded (only the schema's fields cross), keyed by pseudonym,
without headers and time-stamped with the time bucket of copying, not the exact time. Rejected
records go to ``<source>.dlq`` on the private cluster (at least once: a crash before the public
commit repeats them). While the public cluster is unreachable the mirror retries with backoff and
reads nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from connectors.kafka.clients import consumer_config, producer_config
from connectors.kafka.dead_letters import dead_letter
from connectors.kafka.errors import kafka_errors
from connectors.kafka.retry import Abandoned, Retry, call, not_fatal
from connectors.kafka.topics import TopicError, TopicSpec, ensure_topics
from connectors.mirror.errors import MirrorError, NotOnAllowList
from connectors.privacy.anonymizer import Anonymizer, coarsen_time
from schemas import DecodeError, default_codec
from schemas.records import TrainingSample

log = logging.getLogger("streamrec.mirror")
PROGRESS_TOPIC = "_streamrec.mirror.offsets"
T = TypeVar("T")




@dataclass(frozen=True)
class MirrorConfig:
    """Where to copy from and to, and how fast; the anonymizer checks what may cross."""

    private_bootstrap: str
    public_bootstrap: str
    source_topic: str
    target_topic: str
    allowlist: tuple[str, ...]
    progress_topic: str = PROGRESS_TOPIC
    batch_size: int = 1000
    max_rate: float | None = None  # records per second; None: as fast as the clusters go
    once: bool = False  # stop when the source's end (as of the start) has been copied
    idle_exit_s: float | None = None  # stop after this long without new records
    metrics_interval_s: float = 5.0
    timeout_s: float = 30.0  # for each call to a cluster, before it is retried
    backoff_s: tuple[float, float] = (0.5, 30.0)  # first and longest wait between retries

    @property
    def dlq_topic(self) -> str:
        """The private dead-letter topic of records that may not cross."""
        return f"{self.source_topic}.dlq"


@dataclass
class MirrorStats:
    """Counters of one mirror run (read them while it runs, from another thread)."""

    copied: int = 0
    rejected: int = 0
    transactions: int = 0
    retries: int = 0
    lag: int = 0  # source records not yet copied, as of the last metrics line
    paused: bool = False  # waiting for the public cluster


class Mirror:
    """Runs the copy loop of one source topic to one target topic; ``stop()`` ends it."""

    def __init__(self, config: MirrorConfig, anonymizer: Anonymizer) -> None:
        if config.source_topic not in config.allowlist:
            raise NotOnAllowList(
                f"topic {config.source_topic!r} is not on the mirror allow-list "
                f"{list(config.allowlist)}: only anonymised TrainingSample topics may cross to "
                "the public cluster (STREAMREC_MIRROR_ALLOWLIST)")
        self.config = config
        self.anonymizer = anonymizer
        self.stats = MirrorStats()
        self._codec = default_codec()
        self._stop = threading.Event()
        self._retry = Retry(*config.backoff_s, worth_retrying=not_fatal)  # failed steps are redone
        self._next: dict[int, int] = {}  # source partition -> next offset to copy
        self._txn = "none"  # none | open | abort: where the public transaction stands
        self._ends: dict[int, int] | None = None  # with ``once``: where the source ended
        self._metrics_mark = (time.monotonic(), 0)  # when the last metrics line was logged
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._dlq: Producer | None = None

    def stop(self) -> None:
        """Ask the loop to end after the current batch (safe from any thread or signal handler)."""
        self._stop.set()

    @kafka_errors("mirror {self.config.source_topic!r} to {self.config.public_bootstrap}",
                  "are both clusters running (streamrec broker status)?")
    def run(self) -> MirrorStats:
        """Copy until stopped (or caught up with ``once``, or idle with ``idle_exit_s``)."""
        partitions = None
        try:
            partitions = self._source_partitions()
            self._retrying("prepare the public cluster", lambda: self._start_public(partitions))
            progress = self._retrying("read the mirror progress", self._read_progress)
            self._start_private(partitions, progress)
            self._loop()
        except Abandoned:  # stop() cut short a wait to retry
            log.info("mirror stopped while waiting for the public cluster; nothing was lost")
        finally:
            if partitions is not None:  # it reached the private cluster: say what it did
                self._log_metrics()
            self._close()
        return self.stats

    def _source_partitions(self) -> int:
        probe = Consumer(self._consumer_config())
        try:
            meta = probe.list_topics(self.config.source_topic, timeout=self.config.timeout_s)
        finally:
            probe.close()
        topic = meta.topics.get(self.config.source_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise MirrorError(f"source topic {self.config.source_topic!r} does not exist on the "
                              f"private cluster {self.config.private_bootstrap}")
        return len(topic.partitions)

    def _start_public(self, partitions: int) -> None:
        """Create the target and progress topics and fence any older mirror of the same pair."""
        c = self.config
        try:
            ensure_topics(c.public_bootstrap, [
                TopicSpec(c.target_topic, partitions),
                TopicSpec(c.progress_topic, 1, {"cleanup.policy": "compact"})], c.timeout_s)
        except TopicError as exc:
            raise MirrorError(f"{exc} (the target keeps the source's partitions)") from None
        if self._producer is None:
            self._producer = Producer(producer_config(c.public_bootstrap, **{
                "transactional.id": f"streamrec-mirror:{c.source_topic}>{c.target_topic}",
                "transaction.timeout.ms": 60_000, "linger.ms": 20, "logger": log}))
        self._producer.init_transactions(c.timeout_s)

    def _read_progress(self) -> dict[int, int]:
        """The committed next offset of each source partition (empty on the first run).

        Read committed up to the log's end as it is now: a read that stopped at the last stable
        offset could miss our newest progress behind another mirror's open transaction (or the
        commit markers still being written) and copy a batch twice.
        """
        tp = TopicPartition(self.config.progress_topic, 0, OFFSET_BEGINNING)
        end = self._public_end(tp)
        if end == 0:
            return {}
        prefix = self._progress_key("")
        reader = Consumer(self._consumer_config(self.config.public_bootstrap,
                                                **{"enable.partition.eof": True}))
        try:
            reader.assign([tp])
            progress: dict[int, int] = {}
            deadline = time.monotonic() + self.config.timeout_s
            while time.monotonic() < deadline:
                msg = reader.poll(0.2)
                if msg is None or msg.error():
                    if msg is not None and msg.error().code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(msg.error())
                    if reader.position([tp])[0].offset >= end:
                        return progress
                elif msg.key() and msg.key().startswith(prefix) and msg.value():
                    partition = int(msg.key()[len(prefix):])
                    progress[partition] = int(json.loads(msg.value())["next_offset"])
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "the progress topic has a "
                                            "transaction open for long (a crashed mirror?)"))
        finally:
            reader.close()

    def _public_end(self, tp: TopicPartition) -> int:
        """The high watermark of a public partition, uncommitted records included."""
        probe = Consumer(self._consumer_config(self.config.public_bootstrap,
                                               **{"isolation.level": "read_uncommitted"}))
        try:
            return probe.get_watermark_offsets(tp, timeout=self.config.timeout_s)[1]
        finally:
            probe.close()

    def _start_private(self, partitions: int, progress: dict[int, int]) -> None:
        c = self.config
        self._consumer = Consumer(self._consumer_config())
        self._dlq = Producer(producer_config(c.private_bootstrap))
        ends = {}
        for p in range(partitions):
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(c.source_topic, p), timeout=c.timeout_s)
            if progress.get(p, 0) > high:
                raise MirrorError(
                    f"progress says {c.source_topic}[{p}] was copied up to {progress[p]} but it "
                    f"ends at {high}: was the source topic recreated? Mirror it to a new target")
            self._next[p], ends[p] = max(progress.get(p, low), low), high
        self._ends = ends if c.once else None
        self._consumer.assign([TopicPartition(c.source_topic, p, o) for p, o in self._next.items()])
        log.info("mirror %s -> %s starts at %s", c.source_topic, c.target_topic, self._next)

    def _loop(self) -> None:
        c = self.config
        last_record = last_metrics = time.monotonic()
        while not self._stop.is_set():
            if self._caught_up():
                return
            msgs = [m for m in self._consumer.consume(c.batch_size, 0.5) if self._usable(m)]
            now = time.monotonic()
            if msgs:
                self._deliver(msgs)
                last_record = now
                self._pace(len(msgs))
            elif c.idle_exit_s is not None and now - last_record >= c.idle_exit_s:
                return
            if now - last_metrics >= c.metrics_interval_s:
                self._log_metrics()
                last_metrics = now

    def _caught_up(self) -> bool:
        """With ``once``: whether every partition is read to where it ended at the start.

        The consumer's position counts, not just the records copied: a partition written with
        transactions ends in a commit marker, which is never handed out as a record.
        """
        if self._ends is None:
            return False
        tps = [TopicPartition(self.config.source_topic, p) for p in self._ends]
        return all(max(tp.offset, self._next[tp.partition]) >= self._ends[tp.partition]
                   for tp in self._consumer.position(tps))

    def _usable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise KafkaException(err)
        log.warning("private consumer: %s", err.str())
        return False

    def _deliver(self, msgs: list[Message]) -> None:
        """Check a batch, dead-letter what may not cross, and commit the rest with the progress."""
        accepted: list[tuple[int, bytes, bytes]] = []
        rejected: list[tuple[Message, str]] = []
        for msg in msgs:
            checked = self._check(msg)
            if isinstance(checked, str):
                rejected.append((msg, checked))
            else:
                accepted.append((msg.partition(), *checked))
        ends = {m.partition(): m.offset() + 1 for m in msgs}  # offsets rise within a partition
        if rejected:
            self._retrying("dead-letter rejected samples", lambda: self._dead_letter(rejected))
        self._retrying("commit to the public cluster", lambda: self._transact(accepted, ends))
        self._next.update(ends)
        self.stats.copied += len(accepted)
        self.stats.rejected += len(rejected)
        self.stats.transactions += 1

    def _check(self, msg: Message) -> tuple[bytes, bytes] | str:
        """The (key, value) to publish for a source record, or why it may not cross."""
        try:
            sample = self._codec.read(TrainingSample, msg.value())
        except DecodeError as exc:
            return f"not a TrainingSample: {exc}"
        reason = self.anonymizer.violation(sample)
        if reason is not None:
            return reason
        key = sample.pseudonym.encode()
        if msg.key() is not None and msg.key() != key:
            return "record key is not the sample's pseudonym"
        return key, self._codec.write(sample)

    def _dead_letter(self, rejected: list[tuple[Message, str]]) -> None:
        """Write rejected records to the private dead-letter topic; raise unless all arrived."""
        failed: list[KafkaError] = []
        for msg, reason in rejected:
            record = dead_letter(stage="mirror", reason=reason, error_type="PrivacyCheck",
                                 value=msg.value(), key=msg.key(), topic=msg.topic(),
                                 partition=msg.partition(), offset=msg.offset(), source="mirror")
            self._dlq.produce(self.config.dlq_topic, self._codec.write(record),
                              msg.key(), on_delivery=lambda err, _: err and failed.append(err))
        if self._dlq.flush(self.config.timeout_s) or failed:
            raise KafkaException(failed[0] if failed else KafkaError(
                KafkaError._TIMED_OUT, "dead letters not acknowledged in time"))

    def _transact(self, records: list[tuple[int, bytes, bytes]], ends: dict[int, int]) -> None:
        """One public transaction: the samples and the source offsets they reach."""
        producer, c = self._producer, self.config
        if self._txn == "abort":
            producer.abort_transaction(c.timeout_s)
            self._txn = "none"
        if self._txn == "none":
            producer.begin_transaction()
            self._txn = "open"
            # The broker would stamp the exact time of copying, close to the event's own time.
            stamp = coarsen_time(int(time.time() * 1000), self.anonymizer.time_bucket_ms)
            for partition, key, value in records:
                producer.produce(c.target_topic, value, key, partition, timestamp=stamp)
            for partition, offset in ends.items():
                producer.produce(c.progress_topic, json.dumps({"next_offset": offset}).encode(),
                                 self._progress_key(partition), 0)
        try:
            producer.commit_transaction(c.timeout_s)
        except KafkaException as exc:
            if exc.args[0].txn_requires_abort():
                self._txn = "abort"  # the next attempt aborts and writes the batch again
            raise
        self._txn = "none"

    def _retrying(self, what: str, action: Callable[[], T]) -> T:
        """Run ``action`` until it succeeds, waiting longer each time the cluster fails it."""
        try:
            result = call(action, what, self._retry, on_retry=self._failed,
                          sleep=self._stop.wait, logger=log)
        except KafkaException as exc:  # no limit to the tries: only a fatal error gets here
            raise MirrorError(f"cannot {what}: {exc.args[0].str()} (fatal: another mirror with "
                              "the same transactional id may have taken over)") from None
        self._set_paused(False)
        return result

    def _failed(self, err: KafkaError) -> None:
        """A call failed and will be tried again: read nothing until it goes through."""
        self._set_paused(True)
        self.stats.retries += 1

    def _set_paused(self, paused: bool) -> None:
        """Stop fetching from the private cluster while the public one cannot take records."""
        if paused != self.stats.paused and self._consumer is not None:
            assigned = self._consumer.assignment()
            (self._consumer.pause if paused else self._consumer.resume)(assigned)
        self.stats.paused = paused

    def _pace(self, n: int) -> None:
        if self.config.max_rate:
            self._stop.wait(n / self.config.max_rate)

    def _log_metrics(self) -> None:
        s, c = self.stats, self.config
        if self._consumer is not None:
            s.lag = sum(max(self._consumer.get_watermark_offsets(
                TopicPartition(c.source_topic, p), cached=True)[1] - o, 0)
                for p, o in self._next.items())
        now, (since, copied_then) = time.monotonic(), self._metrics_mark
        rate = (s.copied - copied_then) / max(now - since, 1e-9)
        self._metrics_mark = (now, s.copied)
        log.info("mirror %s -> %s: %d copied (%.0f/s lately), %d rejected, lag %d, %d retries%s",
                 c.source_topic, c.target_topic, s.copied, rate, s.rejected, s.lag, s.retries,
                 " (waiting for the public cluster)" if s.paused else "")

    def _progress_key(self, partition: int | str) -> bytes:
        return f"{self.config.source_topic}>{self.config.target_topic}:{partition}".encode()

    def _consumer_config(self, bootstrap: str | None = None, **overrides: Any) -> dict[str, Any]:
        # No group membership: partitions are assigned by hand, offsets live in the progress topic
        # (no auto commit: the consumer default). Read committed (the default too): samples of a
        # worker transaction that aborted must not cross.
        return consumer_config(bootstrap or self.config.private_bootstrap,
                               f"streamrec-mirror:{self.config.source_topic}",
                               **{"auto.offset.reset": "earliest", **overrides})

    def _close(self) -> None:
        if self._producer is not None and self._txn != "none":
            try:
                self._producer.abort_transaction(5)
            except KafkaException as exc:  # the broker aborts it on timeout anyway
                log.warning("could not abort the open transaction: %s", exc.args[0].str())
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._dlq is not None:
            self._dlq.flush(self.config.timeout_s)
