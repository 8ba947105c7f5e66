"""Rebuild the workers' user state from a range of the events topic, as a new table generation.

    generation = Generation(bootstrap, "events", partitions=4, live_app_id="streamrec",
                            app_id="streamrec-g2")
    check_generation(generation)
    report = rebuild_state(generation, rng, processor, work_dir)

Blue/green. The live workers (consumer group = live app id) keep serving and are never touched.
The rebuild computes every user's state from the range with the worker's own batch code
(``streams.pipeline.BatchProcessor`` and ``UserState.apply``) and publishes it as the table of a
*new* app id: the compacted changelog ``<new>-user-state-changelog`` (key = user id, value = the
state's bytes, partition = the partition of the user's events: what a worker writes), plus
the new group's committed positions on the events topic at the range's end. A worker started with
``STREAMREC_APP_ID=<new>`` restores that table and consumes from right after the range: no event
of the range is applied again and none after it is skipped. The operator switches when the new
generation has caught up.

The steps, in this order, keep the new generation consistent even if a run dies part-way:

1. The new group's positions are set to the range's *start*. A worker started too early on a
   half-written generation re-reads the range; each state's source offset makes it skip what the
   state already holds (``UserState.apply``) and apply the rest.
2. States are computed into a private RocksDB under ``work_dir`` (memory stays bounded).
3. Keys the changelog already holds that this build does not produce get tombstones, so the
   generation holds exactly this build whatever ran before (an other range, an earlier worker).
4. One changelog record per user, then (optionally) fresh recommendations scored in batches.
5. The new group's positions are set to the range's *end*: the generation is ready.

Idempotent: the states are a function of the range, so running the same rebuild again writes the
same keys and values (harmless in a compacted changelog) and commits the same positions.
"""

from __future__ import annotations

import re
import shutil
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from rocksdict import Options, Rdict

from connectors.kafka.clients import admin_config, consumer_config
from connectors.kafka.errors import KafkaUnavailable, kafka_errors
from connectors.kafka.topics import TopicSpec, ensure_topics
from connectors.replay.history import RangeReader, Record, ReplayRange, TargetWriter
from connectors.replay.ranges import partition_count
from schemas import default_codec
from schemas.fastpath import RecommendationWriter
from streamrec.errors import ConfigError
from streams.pipeline import BatchProcessor, Incoming, Pending, Scorer
from streams.user_state import UserState

SCORE_BATCH = 256  # users per scorer call: ~20 ms on 2 CPU threads at 10k items
_GENERATION = re.compile(r"^(?P<base>.+)-g(?P<n>\d+)$")
_APP_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")
_INGEST = struct.Struct(">q")  # ingest time stored in front of each state


class RebuildError(ConfigError):
    """A rebuild that cannot run as asked; the message says why and what to do."""


def changelog_key(user: str) -> bytes:
    """The changelog key of a user's state: its id in UTF-8, as the worker writes it."""
    return user.encode()


def _user_of(key: bytes) -> str | None:
    """The user id of a changelog key, or None for a key no worker could have written."""
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None


def next_generation(app_id: str) -> str:
    """The app id of the table generation after ``app_id``: ``x`` → ``x-g2`` → ``x-g3``."""
    match = _GENERATION.match(app_id)
    if match is None:
        return f"{app_id}-g2"
    return f"{match['base']}-g{int(match['n']) + 1}"


@dataclass(frozen=True)
class Generation:
    """Where a rebuilt user-state table goes, and the live one it must never touch."""

    bootstrap: str
    events_topic: str
    partitions: int  # the workers' partition count (STREAMREC_PARTITIONS)
    live_app_id: str
    app_id: str

    def __post_init__(self) -> None:
        # The app id names Kafka topics and the rebuild's work directory.
        if not _APP_ID.match(self.app_id):
            raise RebuildError(
                f"app id {self.app_id!r} is not usable: use up to 200 letters, digits, '.', '_' "
                "or '-', not starting with '.' (it names topics and a directory)")

    @property
    def changelog(self) -> str:
        """The changelog topic of the new generation's user-state table (Faust's naming)."""
        return f"{self.app_id}-user-state-changelog"


@dataclass
class RebuildReport:
    """What a rebuild read and wrote."""

    events: int = 0
    applied: int = 0
    duplicates: int = 0
    invalid: int = 0  # undecodable or invalid: the live worker dead-lettered them already
    users: int = 0
    tombstones: int = 0
    recommendations: int = 0
    build_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Events per second of the whole rebuild."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RecommendTo:
    """Emit a recommendation for every rebuilt user to ``topic``, scored by ``scorer``."""

    topic: str
    scorer: Scorer | None  # None: popularity of the range, as a worker without a model
    batch: int = SCORE_BATCH


@kafka_errors("check app id {gen.app_id!r} on {gen.bootstrap}")
def check_generation(gen: Generation, timeout_s: float = 30.0) -> None:
    """Refuse a generation that would touch the live state or that workers are using now."""
    if gen.app_id == gen.live_app_id:
        raise RebuildError(
            f"--app-id {gen.app_id!r} is the live app id: rebuilding into it would overwrite "
            "the state the workers serve. Rebuild into a new app id (the default is "
            f"{next_generation(gen.live_app_id)!r}) and switch the workers to it")
    have = partition_count(gen.bootstrap, gen.events_topic, timeout_s)
    if have is None:
        raise RebuildError(f"events topic {gen.events_topic!r} does not exist on {gen.bootstrap}")
    if have != gen.partitions:
        raise RebuildError(
            f"events topic {gen.events_topic!r} has {have} partitions but the workers use "
            f"STREAMREC_PARTITIONS={gen.partitions}; set it to {have}")
    members = group_members(gen.bootstrap, gen.app_id, timeout_s)
    if members:
        raise RebuildError(
            f"{members} worker(s) of app id {gen.app_id!r} are running; stop them first (a "
            "rebuild replaces that generation's state and positions)")


def group_members(bootstrap: str, group: str, timeout_s: float = 30.0) -> int:
    """How many consumers are members of ``group`` now (0 when it does not exist)."""
    admin = _admin(bootstrap)  # held until the answer: a dropped client never resolves it
    future = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group]
    try:
        return len(future.result().members)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
            return 0
        raise


def commit_positions(bootstrap: str, group: str, topic: str, positions: dict[int, int],
                     timeout_s: float = 30.0) -> None:
    """Set consumer group ``group``'s committed offsets on ``topic``; it must have no members."""
    asked = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p, o) for p, o in sorted(positions.items())])
    admin = _admin(bootstrap)  # held until the answer: a dropped client never resolves it
    try:
        answer = admin.alter_consumer_group_offsets([asked], request_timeout=timeout_s)
        errors = [tp.error for tp in answer[group].result().topic_partitions if tp.error]
    except KafkaException as exc:
        errors = [exc.args[0]]
    if not errors:
        return
    if any(e.code() == KafkaError.UNKNOWN_MEMBER_ID for e in errors):
        # The broker refuses offsets from outside a group that has members.
        raise RebuildError(f"workers of app id {group!r} are running, so its positions cannot "
                           "be set; stop them and run the rebuild again")
    raise KafkaUnavailable(f"cannot set the positions of group {group!r}: {errors[0].str()}")


def _admin(bootstrap: str) -> AdminClient:
    # Warnings and errors only: at info level librdkafka reports purged background events.
    return AdminClient(admin_config(bootstrap, log_level=4))


class StateBuild:
    """The ``StateStore`` of a rebuild: a private RocksDB of user id → (ingest time, state)."""

    def __init__(self, path: Path) -> None:
        if path.exists():
            shutil.rmtree(path)  # left by a run that died: states are computed again anyway
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = Rdict(str(path), options=Options(raw_mode=True))

    def get(self, user: str, msg: Incoming) -> bytes | None:
        """The user's state bytes, or None."""
        stored = self._db.get(user.encode())
        return None if stored is None else stored[_INGEST.size:]

    def put(self, user: str, value: bytes, msg: Incoming) -> None:
        """Store the user's state with the ingest time of the event that last changed it."""
        self._db[user.encode()] = _INGEST.pack(msg.timestamp) + value

    def partition_of(self, key: bytes) -> int | None:
        """The source partition of the user's state (None: no such user in this build)."""
        stored = self._db.get(key)
        return None if stored is None else UserState.from_bytes(stored[_INGEST.size:]).partition

    def users(self) -> Iterator[tuple[str, bytes, UserState, int]]:
        """Every user: id, state bytes, state, ingest time of its last event (in key order)."""
        for key, stored in self._db.items():
            value = stored[_INGEST.size:]
            user = cast(bytes, key).decode()  # raw mode: keys are bytes
            yield user, value, UserState.from_bytes(value), _INGEST.unpack_from(stored)[0]

    def apply(self, processor: BatchProcessor, topic: str, batch: Sequence[Record],
              report: RebuildReport) -> None:
        """Apply a batch of events-topic records exactly as a worker's agent does."""
        incoming = [Incoming(m.key(), m.value(), topic, m.partition(), m.offset(),
                             m.timestamp()[1]) for m in batch]
        result = processor.apply(incoming, self)
        report.events += len(batch)
        report.applied += result.applied
        report.duplicates += result.duplicates
        report.invalid += len(result.dead_letters)

    def remove(self) -> None:
        """Close and delete the store."""
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)


@kafka_errors("rebuild the state of app id {gen.app_id!r} from {rng.topic!r} on {gen.bootstrap}")
def rebuild_state(gen: Generation, rng: ReplayRange, processor: BatchProcessor, work_dir: Path,
                  *, recommend: RecommendTo | None = None,
                  on_progress: Callable[[int], None] | None = None) -> RebuildReport:
    """Compute the range's user states and publish them as generation ``gen`` (steps 1-5)."""
    if processor.anonymize is not None:
        raise RebuildError("a rebuild emits no training samples: build the processor without "
                           "anonymize (backfill-training sends samples)")
    report, started = RebuildReport(), time.monotonic()
    ensure_topics(gen.bootstrap, [TopicSpec(gen.changelog, gen.partitions,
                                            {"cleanup.policy": "compact"})])
    starts = {r.partition: r.start for r in rng.partitions}
    commit_positions(gen.bootstrap, gen.app_id, gen.events_topic, starts)
    build = StateBuild(work_dir / gen.app_id)
    try:
        reader = RangeReader(gen.bootstrap, rng)
        try:
            for batch in reader.batches():
                build.apply(processor, rng.topic, batch, report)
                if on_progress is not None and batch:
                    on_progress(len(batch))
        finally:
            reader.close()
        report.build_seconds = time.monotonic() - started
        _publish(gen, build, processor, recommend, report)
    finally:
        build.remove()
    commit_positions(gen.bootstrap, gen.app_id, gen.events_topic,
                     {r.partition: r.end for r in rng.partitions})
    report.seconds = time.monotonic() - started
    return report


def _publish(gen: Generation, build: StateBuild, processor: BatchProcessor,
             recommend: RecommendTo | None, report: RebuildReport) -> None:
    """Tombstones for stale keys, one changelog record per user, optional recommendations."""
    stale = list(stale_keys(gen.bootstrap, gen.changelog, gen.partitions, build))
    with ExitStack() as stack:
        changelog = stack.enter_context(TargetWriter(gen.bootstrap, gen.changelog))
        emitter = None
        if recommend is not None:
            recs = stack.enter_context(TargetWriter(gen.bootstrap, recommend.topic))
            emitter = _Recommendations(processor, recommend, recs, gen.events_topic)
        for partition, key in stale:
            changelog.write(None, key, partition, [])
        report.tombstones = len(stale)
        for user, value, state, ingest in build.users():
            changelog.write(value, changelog_key(user), state.partition, [])
            report.users += 1
            if emitter is not None:
                emitter.add(user, state, ingest)
        if emitter is not None:
            report.recommendations = emitter.finish()
        _flush(changelog)


class _Recommendations:
    """Collects rebuilt users and writes their recommendations, one scorer call per batch."""

    def __init__(self, processor: BatchProcessor, recommend: RecommendTo, writer: TargetWriter,
                 events_topic: str) -> None:
        self.processor, self.recommend, self.writer = processor, recommend, writer
        self.events_topic = events_topic
        self.encode = RecommendationWriter(default_codec()).write
        self.pending: list[Pending] = []
        self.written = 0

    def add(self, user: str, state: UserState, ingest_ms: int) -> None:
        """Queue one user; the cause of its recommendation is the last event of its state."""
        cause = {"event_id": state.last_event_id, "timestamp": state.last_event_time}
        msg = Incoming(user.encode(), None, self.events_topic, state.partition, state.offset,
                       ingest_ms)
        self.pending.append(Pending(user, state, cause, msg))
        if len(self.pending) >= self.recommend.batch:
            self._emit()

    def finish(self) -> int:
        """Score what is queued, wait for every write; return how many were written."""
        self._emit()
        _flush(self.writer)
        return self.written

    def _emit(self) -> None:
        if not self.pending:
            return
        records = self.processor.recommend(self.pending, self.recommend.scorer)
        for p, record in zip(self.pending, records, strict=True):
            # The partition of the user's events, as the worker's latest-recs table writes it.
            self.writer.write(self.encode(record), p.user.encode(),
                              p.msg.partition, [])
        self.writer.poll()
        self.written += len(self.pending)
        self.pending = []


def _flush(writer: TargetWriter) -> None:
    # A non-transactional TargetWriter's commit is a flush that raises unless all were delivered.
    writer.commit(writer.topic, {}, None, more=False)


def stale_keys(bootstrap: str, topic: str, partitions: int, build: StateBuild,
               timeout_s: float = 60.0) -> Iterator[tuple[int, bytes]]:
    """(partition, key) of each key ``topic`` holds now that ``build`` does not put there."""
    consumer = Consumer(consumer_config(bootstrap, f"streamrec-rebuild-{topic}",
                                        **{"enable.partition.eof": True}))
    try:
        ends = {}
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        seen: set[tuple[int, bytes]] = set()
        deadline = time.monotonic() + timeout_s
        while ends:
            # Typed as Record: the client's stubs make partition/offset optional for events.
            msgs = cast(list[Record], consumer.consume(10_000, 0.5))
            if not msgs and time.monotonic() > deadline:
                raise KafkaUnavailable(f"reading {topic!r} stalled; still unread: {sorted(ends)}")
            for msg in msgs:
                partition, offset, key, err = msg.partition(), msg.offset(), msg.key(), msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(err)
                elif key is not None and (partition, key) not in seen \
                        and offset < ends.get(partition, -1):  # compaction forbids null keys
                    deadline = time.monotonic() + timeout_s
                    user = _user_of(key)
                    if user is None or build.partition_of(user.encode()) != partition:
                        seen.add((partition, key))
                        yield partition, key
                if partition in ends and offset + 1 >= ends[partition]:
                    del ends[partition]
    finally:
        consumer.close()
