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

from connectors.dead_letters import dead_letter
from schemas import Codec, DecodeError
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
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)  # anonymised, for training
    applied: int = 0
    duplicates: int = 0


class BatchProcessor:
    """The worker's logic, one batch at a time."""

    def __init__(self, codec: Codec, *, top_k: int, history_len: int,
                 buckets: Callable[[str], list[int]], popularity: DecayedPopularity,
                 anonymize: Callable[[dict[str, Any], int, list[int]], dict[str, Any] | None]
                 | None = None,
                 source: str = "worker") -> None:
        self.codec = codec
        self.top_k = top_k
        self.history_len = history_len
        self.buckets = buckets
        self.popularity = popularity
        self.anonymize = anonymize
        self.source = source

    def apply(self, batch: Sequence[Incoming], store: StateStore) -> BatchResult:
        """Decode each record, dead-letter the bad ones, apply the good ones to user state.

        Each user's state is read once and written once per batch (in the context of that
        user's last event), however many of the user's events the batch holds.
        """
        result = BatchResult()
        clicked: list[str] = []
        changed: set[str] = set()
        for msg in batch:
            event = self._decode(msg, result)
            if event is None:
                continue
            user = event["user_id"]
            pending = result.pending.get(user)
            state = pending.state if pending else UserState.from_bytes(store.get(user, msg))
            buckets = self.buckets(event["query"]) if event["type"] == "search" else []
            if state.apply(event, msg.partition, msg.offset, buckets, self.history_len):
                changed.add(user)
                result.applied += 1
                if event["type"] == "click":
                    clicked.append(event["item_id"])
            else:
                result.duplicates += 1
            if self.anonymize is not None:
                # Redelivered events are sampled again: the sample id is stable, so the trainer
                # drops the copy, and a sample lost in a crash is not lost for good. A search's
                # buckets are the ones just made for the state (the same keyed hashes).
                sample = self.anonymize(event, msg.offset, buckets)
                if sample is not None:
                    result.samples.append(sample)
            result.pending[user] = Pending(user, state, event, msg)
        for user in changed:
            pending = result.pending[user]
            store.put(user, pending.state.to_bytes(), pending.msg)
        self.popularity.add(clicked)
        return result

    def _decode(self, msg: Incoming, result: BatchResult) -> dict[str, Any] | None:
        try:
            event = self.codec.decode("user_event", msg.value)
        except DecodeError as exc:
            result.dead_letters.append(self._dead(msg, "decode", str(exc), exc))
            return None
        problem = _semantic_problem(event, msg.key)
        if problem:
            result.dead_letters.append(self._dead(msg, "validate", problem, None))
            return None
        return event

    def _dead(self, msg: Incoming, stage: str, reason: str, exc: Exception | None) -> dict:
        return dead_letter(stage=stage, reason=reason,
                           error_type=type(exc).__name__ if exc else "InvalidEvent",
                           value=msg.value, key=msg.key, topic=msg.topic,
                           partition=msg.partition, offset=msg.offset, source=self.source)

    def recommend(self, pending: Sequence[Pending], scorer: Scorer | None) -> list[dict]:
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
    def record(scored: Scored) -> dict:
        """The Recommendation record (schema ``recommendation``) of one result."""
        p = scored.pending
        return {
            "user_id": p.user,
            "items": [{"item_id": i, "score": float(s)} for i, s in scored.items],
            "model_version": scored.version,
            "strategy": scored.strategy,
            "cause_event_id": p.cause["event_id"],
            "cause_event_time": p.cause["timestamp"],
            "cause_ingest_time": p.msg.timestamp,
            "produced_at": int(time.time() * 1000),
        }


def _semantic_problem(event: dict[str, Any], key: bytes | None) -> str | None:
    """What makes a well-formed record unusable (None if nothing)."""
    if event["type"] == "click" and not event["item_id"]:
        return "click without item_id"
    if event["type"] == "search" and not event["query"]:
        return "search without query"
    if not event["user_id"]:
        return "empty user_id"
    if key is not None and key != event["user_id"].encode():
        return (f"record key {key[:40]!r} differs from user_id {event['user_id'][:40]!r}: "
                "events must be keyed by user id to keep each user's order")
    return None
