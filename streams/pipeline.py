"""One micro-batch of the worker: decode or dead-letter, update user state, score, recommend.

Plain code with no Faust in it: the worker (``streams/app.py``, fed by ``streams/intake.py``)
hands it batches and does the I/O. State access goes through a small ``StateStore`` protocol so
tests use a dict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from connectors.kafka.dead_letters import dead_letter
from connectors.sdk.events import record_problem
from schemas import Codec, DecodeError
from schemas.records import DeadLetter, Recommendation, TrainingSample
from streams.partitioning import FIX, KeyPartitions
from streams.popularity import DecayedPopularity
from streams.user_state import UserState


@dataclass(frozen=True, slots=True)
class Incoming:
    """One record taken from the events topic."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: int  # Kafka timestamp (ingest time), ms


class StateStore(Protocol):
    """Where user states live (a Faust table in the worker)."""

    def get(self, user: str, msg: Incoming) -> bytes | None: ...

    def put(self, user: str, value: bytes, msg: Incoming) -> None: ...


class Scorer(Protocol):
    """What the pipeline needs of ``model.scorer.Scorer``."""

    version: str

    def knows(self, item_id: str) -> bool: ...

    def prepare(self, histories: Sequence[Sequence[str]], k: int,
                queries: Sequence[Sequence[int]] | None = None) -> ScoringJob: ...


@dataclass
class Pending:
    """A user whose recommendation must be refreshed, with the event that caused it."""

    user: str
    state: UserState
    cause: dict[str, Any]
    msg: Incoming


class ScoringJob(Protocol):
    """What the pipeline needs of ``model.scorer.ScoringJob``."""

    version: str
    small: bool  # quick enough to run on the calling thread

    def run(self) -> Any: ...

    def results(self) -> list[list[tuple[str, float]]]: ...


@dataclass
class Scoring:
    """A batch's users on their way to recommendations (``BatchProcessor.prepare``)."""

    pending: Sequence[Pending]
    modelled: list[Pending]  # those the model scores; the others get popularity
    job: ScoringJob | None


class Scored(NamedTuple):
    """One user's result: best items first, the model version (or 'popularity'), strategy."""

    pending: Pending
    items: list[tuple[str, float]]
    version: str
    strategy: str


@dataclass
class BatchResult:
    """What applying a batch produced."""

    pending: dict[str, Pending] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    samples: list[TrainingSample] = field(default_factory=list)  # anonymised, for training
    forwards: list[tuple[Incoming, int]] = field(default_factory=list)  # misrouted, and where to
    misrouted: int = 0  # events on another partition than their key's (forwarded or dead)
    sampled: list[Incoming] = field(default_factory=list)  # the record of each sample
    applied: int = 0
    duplicates: int = 0


class BatchProcessor:
    """The worker's logic, one batch at a time."""

    def __init__(self, codec: Codec, *, top_k: int, history_len: int,
                 buckets: Callable[[str], list[int]], popularity: DecayedPopularity,
                 anonymize: Callable[[dict[str, Any], int, list[int]], TrainingSample | None]
                 | None = None,
                 source: str = "worker", partitions: KeyPartitions | None = None,
                 forward_misrouted: bool = False) -> None:
        self.codec = codec
        self.top_k = top_k
        self.history_len = history_len
        self.buckets = buckets
        self.popularity = popularity
        self.anonymize = anonymize
        self.source = source
        self.partitions = partitions  # None: events are not checked for their partition
        self.forward_misrouted = forward_misrouted

    def apply(self, batch: Sequence[Incoming], store: StateStore) -> BatchResult:
        """Decode each record, dead-letter the bad ones, apply the good ones to user state.

        Each user's state is read once and written once per batch (in the context of that
        user's last event), however many of the user's events the batch holds. No record can
        fail the batch: one that breaks any step is dead-lettered with the step and the reason,
        and changes no state.

        A user gets a new recommendation for an event applied now, or for the event the state
        applied last when it is read again (its recommendation may have been lost in a crash),
        never for an older one: after a rebalance or a restart re-reads a partition, a user's
        latest recommendation is still caused by the user's last event.
        """
        result = BatchResult()
        decoded = self.decode(batch, result)
        self.apply_decoded(decoded, store, result, batch)
        return result

    def decode(self, batch: Sequence[Incoming], result: BatchResult
               ) -> list[tuple[Incoming, dict[str, Any]]]:
        """Stage 1: each record's event, in batch order; a record that cannot be decoded, or
        whose event is unusable or on the wrong partition, goes to ``result`` instead."""
        decoded = []
        for msg in batch:
            event = self._decode(msg, result)
            if event is not None:
                decoded.append((msg, event))
        return decoded

    def apply_decoded(self, decoded: Sequence[tuple[Incoming, dict[str, Any]]],
                      store: StateStore, result: BatchResult,
                      batch: Sequence[Incoming] = ()) -> None:
        """Stage 2: apply decoded events to user state (see ``apply``); ``batch``, the records
        they came from, keeps the dead letters in record order."""
        clicked: list[str] = []
        changed: set[str] = set()
        refused = len(result.dead_letters)
        for msg, event in decoded:
            try:
                self._apply_one(msg, event, store, result, clicked, changed)
            except Exception as exc:  # noqa: BLE001 - the record is dead-lettered, not lost
                result.dead_letters.append(self.dead(msg, "process", f"{exc}", exc))
        if 0 < refused < len(result.dead_letters) and batch:
            position = {(m.partition, m.offset): i for i, m in enumerate(batch)}
            result.dead_letters.sort(key=lambda d: position.get((d.partition, d.offset), 0))
        for user in changed:
            pending = result.pending[user]
            try:
                store.put(user, pending.state.to_bytes(), pending.msg)
            except BufferError:
                raise  # the producer's queue is full: the batch waits and is read again
            except Exception as exc:  # noqa: BLE001 - e.g. refused by the producer
                result.dead_letters.append(self.dead(
                    pending.msg, "write", f"user state not written: {exc}", exc))
                del result.pending[user]
        self.popularity.add(clicked)

    def _apply_one(self, msg: Incoming, event: dict[str, Any], store: StateStore,
                   result: BatchResult, clicked: list[str], changed: set[str]) -> None:
        user = event["user_id"]
        pending = result.pending.get(user)
        state = pending.state if pending else UserState.from_bytes(store.get(user, msg))
        buckets = self.buckets(event["query"]) if event["type"] == "search" else []
        sample = None
        if self.anonymize is not None:
            # Before the state changes, so that an event it refuses changes nothing.
            # Redelivered events are sampled again: the sample id is stable, so the trainer
            # drops the copy, and a sample lost in a crash is not lost for good. A search's
            # buckets are the ones just made for the state (the same keyed hashes).
            sample = self.anonymize(event, msg.offset, buckets)
        applied = state.apply(event, msg.partition, msg.offset, buckets, self.history_len)
        if sample is not None:
            result.samples.append(sample)
            result.sampled.append(msg)
        if applied:
            changed.add(user)
            result.applied += 1
            if event["type"] == "click":
                clicked.append(event["item_id"])
        else:
            result.duplicates += 1
            if not state.applied_last(msg.partition, msg.offset):
                return  # an older event read again: a later one caused the user's latest
        result.pending[user] = Pending(user, state, event, msg)

    def _decode(self, msg: Incoming, result: BatchResult) -> dict[str, Any] | None:
        try:
            event = self.codec.decode("user_event", msg.value)
        except DecodeError as exc:
            result.dead_letters.append(self.dead(msg, "decode", str(exc), exc))
            return None
        problem = _semantic_problem(event, msg.key)
        if problem:
            result.dead_letters.append(self.dead(msg, "validate", problem, None))
            return None
        if self.partitions is not None and msg.key is not None:
            right = self.partitions.of(msg.key)
            if right != msg.partition:
                result.misrouted += 1
                if self.forward_misrouted:
                    result.forwards.append((msg, right))
                else:
                    result.dead_letters.append(self.dead(msg, "validate", (
                        f"misrouted: user {event['user_id'][:40]!r} belongs on partition "
                        f"{right}, not {msg.partition}; {FIX}"), None))
                return None
        return event

    def dead(self, msg: Incoming, stage: str, reason: str, exc: Exception | None) -> DeadLetter:
        """The dead letter of ``msg``, which failed at ``stage`` for ``reason``."""
        return dead_letter(stage=stage, reason=reason,
                           error_type=type(exc).__name__ if exc else "InvalidEvent",
                           value=msg.value, key=msg.key, topic=msg.topic,
                           partition=msg.partition, offset=msg.offset, source=self.source)

    def recommend(self, pending: Sequence[Pending], scorer: Scorer | None
                  ) -> list[Recommendation]:
        """Recommendation records for these users: the model where it can, else popularity."""
        scoring = self.prepare(pending, scorer)
        if scoring.job is not None:
            scoring.job.run()
        return [self.record(r) for r in self.finish(scoring)]

    def prepare(self, pending: Sequence[Pending], scorer: Scorer | None) -> Scoring:
        """Step 1 of ``recommend``: the scorer's job for the users the model knows something of.

        Step 2 is ``scoring.job.run()`` (ONNX Runtime only, any thread), step 3 ``finish``.
        """
        modelled = [p for p in pending if scorer is not None
                    and any(scorer.knows(i) for i in p.state.items)]
        job = None
        if modelled and scorer is not None:
            job = scorer.prepare([p.state.items for p in modelled], self.top_k,
                                 [p.state.query_buckets for p in modelled])
        return Scoring(pending, modelled, job)

    def finish(self, scoring: Scoring) -> list[Scored]:
        """Step 3 of ``recommend``: one result per pending user, in order; popularity for the
        users the model could not score."""
        scored: dict[str, Scored] = {}
        if scoring.job is not None:
            version = scoring.job.version
            for p, items in zip(scoring.modelled, scoring.job.results(), strict=True):
                scored[p.user] = Scored(p, items, version, "model")
        out = []
        for p in scoring.pending:
            if p.user not in scored:
                items = self.popularity.top(self.top_k, exclude=p.state.items)
                scored[p.user] = Scored(p, items, "popularity", "popularity")
            out.append(scored[p.user])
        return out

    @staticmethod
    def record(scored: Scored, produced_at: int | None = None) -> Recommendation:
        """The Recommendation of one result (produced now, unless ``produced_at`` is given)."""
        p = scored.pending
        return Recommendation(
            p.user, scored.items, scored.version, scored.strategy, p.cause["event_id"],
            p.cause["timestamp"], p.msg.timestamp,
            int(time.time() * 1000) if produced_at is None else produced_at)


def _semantic_problem(event: dict[str, Any], key: bytes | None) -> str | None:
    """What makes a well-formed record unusable (None if nothing)."""
    problem = record_problem(event)
    if problem:
        return problem
    if key is None:
        # Not re-keyed and forwarded: a copy would be a second event with another offset, and
        # a redelivery of this one would forward it twice.
        return ("record has no key: events must be keyed by user id (the partitioner then "
                "keeps each user on one partition); produce it again with its user_id as key")
    if key != event["user_id"].encode():
        return (f"record key {key[:40]!r} differs from user_id {event['user_id'][:40]!r}: "
                "events must be keyed by user id to keep each user's order")
    return None
