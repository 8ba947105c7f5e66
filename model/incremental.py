"""Incremental training on a stream of TrainingSamples: buffer, warm start, held-out comparison.

The public-side trainer (``connectors.training.loop``) feeds decoded samples into a
``SampleBuffer``, which deduplicates them by ``sample_id``, keeps each pseudonym's events ordered
by ``seq`` and numbers every consumed record (its *arrival*). A window is trained by
``train_candidate``: it warm-starts from the parent artifact, grows the item vocabulary (old
indices kept, never-seen items appended with fresh embedding rows) and exports a new artifact.
``heldout_metrics`` scores an artifact on next-item cases that no candidate trained on, and
``release_decision`` applies the release rule. No Kafka here.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import insort
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from model.artifact import Artifact
from model.config import ModelConfig, TrainConfig
from model.data import Split, Vocabulary
from model.errors import ArtifactError
from model.evaluate import EvalCase, model_scores
from model.export import WEIGHTS_FILE, save_trained
from model.metrics import ranks_from_scores, summarize
from model.network import SASRec
from model.scorer import Scorer
from model.train import train
from schemas.records import TrainingSample


@dataclass(frozen=True, slots=True)
class Step:
    """One event of a pseudonym: a click (``item``) or a search (``buckets``)."""

    seq: int
    arrival: int
    item: str | None
    buckets: tuple[int, ...]
    time: int


@dataclass(frozen=True, slots=True)
class HeldOut:
    """A next-item case: what the user did before (items, search buckets) and what came next."""

    history: tuple[str, ...]
    queries: tuple[int, ...]
    target: str


class SampleBuffer:
    """Per-pseudonym histories of the samples seen, bounded in users and events per user."""

    def __init__(
        self,
        max_query_tokens: int = 16,
        max_users: int = 200_000,
        max_events_per_user: int = 200,
        dedup_capacity: int = 2_000_000,
    ) -> None:
        self.max_query_tokens = max_query_tokens
        self.max_users = max_users
        self.max_events = max_events_per_user
        self.dedup_capacity = dedup_capacity
        self.key_version = 0
        self._users: OrderedDict[str, list[Step]] = OrderedDict()  # least recently active first
        self._last_arrival: dict[str, int] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        """Number of pseudonyms held."""
        return len(self._users)

    def add(self, sample: TrainingSample, arrival: int) -> bool:
        """Keep one decoded sample; False when its ``sample_id`` was seen before (a re-send)."""
        sid = sample.sample_id
        if sid in self._seen:
            return False
        self._seen[sid] = None
        if len(self._seen) > self.dedup_capacity:
            self._seen.popitem(last=False)
        # Buckets follow the newest pseudonym key; older keys' buckets hash other words.
        self.key_version = max(self.key_version, sample.key_version)
        buckets = sample.query_buckets if sample.key_version == self.key_version else ()
        item = sample.item_id if sample.type == "click" else None
        step = Step(sample.seq, arrival, item, tuple(buckets), sample.time_bucket)
        user = sample.pseudonym
        steps = self._users.setdefault(user, [])
        self._users.move_to_end(user)
        insort(steps, step, key=lambda s: (s.seq, s.arrival))
        del steps[: max(0, len(steps) - self.max_events)]
        self._last_arrival[user] = max(self._last_arrival.get(user, -1), arrival)
        if len(self._users) > self.max_users:
            gone, _ = self._users.popitem(last=False)
            self._last_arrival.pop(gone, None)
        return True

    def active_since(self, arrival: int) -> list[str]:
        """Pseudonyms with an event that arrived at or after ``arrival``."""
        return [u for u, last in self._last_arrival.items() if last >= arrival]

    def replay_users(self, n: int, exclude: set[str], rng: np.random.Generator) -> list[str]:
        """Up to ``n`` random other pseudonyms: old data mixed in so the model does not forget."""
        pool = [u for u in self._users if u not in exclude]
        if not pool or n <= 0:
            return []
        return [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]

    def sequences(
        self, users: Sequence[str], before: int
    ) -> tuple[list[list[str]], list[list[list[int]]]]:
        """Clicks of each user that arrived before ``before``, and the search context of each."""
        seqs, contexts = [], []
        for user in users:
            items: list[str] = []
            ctx: list[list[int]] = []
            recent: list[int] = []
            for step in self._users.get(user, ()):
                if step.arrival >= before:
                    continue
                if step.item is not None:
                    items.append(step.item)
                    ctx.append(list(recent))
                else:
                    recent = [*recent, *step.buckets][-self.max_query_tokens :]
            seqs.append(items)
            contexts.append(ctx)
        return seqs, contexts

    def heldout(self, start: int) -> list[HeldOut]:
        """Next-item cases of the clicks that arrived at or after ``start``.

        A case needs at least one earlier click of the user and a target outside the history:
        the served graph never recommends a seen item, so a repeat click cannot be hit.
        """
        cases = []
        for user in self.active_since(start):
            items: list[str] = []
            recent: list[int] = []
            for step in self._users[user]:
                if step.item is None:
                    recent = [*recent, *step.buckets][-self.max_query_tokens :]
                    continue
                if step.arrival >= start and items and step.item not in items:
                    cases.append(HeldOut(tuple(items), tuple(recent), step.item))
                items.append(step.item)
        return cases

    def time_range(self, start: int, stop: int) -> tuple[int, int] | None:
        """Oldest and newest sample time (ms) among arrivals ``start <= a < stop``."""
        times = [
            s.time
            for u in self.active_since(start)
            for s in self._users[u]
            if start <= s.arrival < stop
        ]
        return (min(times), max(times)) if times else None


def grown_vocabulary(
    parent_ids: Sequence[str] | None, sequences: Sequence[Sequence[str]]
) -> Vocabulary:
    """The parent's vocabulary (same indices), never-seen items appended in order of appearance."""
    base = list(parent_ids) if parent_ids else [""]
    known = set(base)
    new = dict.fromkeys(i for seq in sequences for i in seq if i not in known)
    return Vocabulary([*base, *new])


def grown_state(parent: Artifact, mc: ModelConfig) -> dict[str, torch.Tensor]:
    """The parent's weights in a network of ``mc``; rows of items the parent lacks stay fresh."""
    path = parent.file(WEIGHTS_FILE)
    if path is None:
        raise ArtifactError(
            f"artifact {parent.path} has no {WEIGHTS_FILE}: cannot warm-start "
            "from it; start the trainer from an artifact made by streamrec train"
        )
    old = torch.load(path, map_location="cpu", weights_only=True)
    state = SASRec(mc).state_dict()  # fresh initialisation for the new item rows
    for name, tensor in old.items():
        if name == "item_emb.weight":
            state[name][: tensor.shape[0]] = tensor
        else:
            state[name] = tensor
    return state


def train_candidate(
    parent: Artifact | None,
    sequences: list[list[str]],
    contexts: list[list[list[int]]],
    base: ModelConfig,
    tc: TrainConfig,
    out: Path,
    metadata: dict[str, Any],
    device: str = "cpu",
) -> Artifact:
    """Train one window from ``parent`` (or from scratch) and save the artifact at ``out``.

    ``metadata`` must hold the ``version`` and may add anything (metrics, training data).
    No validation split: the caller compares candidates on its own held-out cases, so
    evaluation runs only after the last epoch and training keeps the final weights.
    """
    vocab = grown_vocabulary(parent.item_ids if parent else None, sequences)
    mc = dataclasses.replace(parent.config if parent else base, n_items=len(vocab))
    encoded = [vocab.encode(s) for s in sequences]
    width = mc.max_query_tokens
    split = Split(
        encoded,
        contexts,
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        np.zeros((0, width), np.int64),
        np.zeros((0, width), np.int64),
    )
    tc = dataclasses.replace(tc, eval_every=tc.epochs)
    init = grown_state(parent, mc) if parent else None
    result = train(split, mc, tc, device, None, init)
    meta = {
        "parent_version": parent.version if parent else None,
        "config": mc.to_dict(),
        "train_config": tc.to_dict(),
        "item_ids": vocab.item_ids,
        "train_seconds": round(result.seconds, 2),
        **metadata,
    }
    return save_trained(result.model, out, meta)


def heldout_metrics(
    scorer: Scorer, cases: Sequence[HeldOut], batch_size: int = 256
) -> dict[str, float]:
    """HR@K, NDCG@K and MRR of the scorer's model on the cases (FULL ranking, history masked).

    A target the model does not know counts as a miss, as it would in service.
    """
    if not cases:
        return {}
    index = {item: i for i, item in enumerate(scorer.artifact.item_ids) if i}
    width = scorer.artifact.config.max_query_tokens
    queries = np.zeros((len(cases), width), np.int64)
    for row, case in enumerate(cases):
        recent = case.queries[-width:]
        if recent:
            queries[row, width - len(recent) :] = recent
    case_arrays = EvalCase(
        [np.asarray([index[i] for i in c.history if i in index], np.int64) for c in cases],
        np.asarray([index.get(c.target, 0) for c in cases], np.int64),
        queries,
    )
    ranks = [
        ranks_from_scores(
            model_scores(scorer, case_arrays, start, start + batch_size),
            case_arrays.targets[start : start + batch_size],
        )
        for start in range(0, len(cases), batch_size)
    ]
    return summarize(np.concatenate(ranks))


@dataclass(frozen=True)
class Comparison:
    """Candidate and current model on the same held-out cases."""

    candidate: dict[str, float]
    current: dict[str, float] | None  # None: there is no current model
    cases: int
    new_items: int  # items the candidate can recommend and the current model cannot


def compare(
    candidate: Artifact,
    current: Artifact | None,
    cases: Sequence[HeldOut],
    device: Literal["auto", "cpu", "cuda"] = "cpu",
) -> Comparison:
    """Score both models on ``cases`` (ONNX Runtime, as served) and count the new items."""

    def score(artifact: Artifact) -> dict[str, float]:
        return heldout_metrics(Scorer(artifact.path, device=device, threads=2), cases)

    known = len(current.item_ids) if current is not None else 1
    return Comparison(
        score(candidate),
        score(current) if current is not None else None,
        len(cases),
        len(candidate.item_ids) - known,
    )


@dataclass(frozen=True)
class Decision:
    """Whether a candidate is released, and why (``reason`` is one of the rule's names)."""

    release: bool
    reason: str  # first | better | new_items | worse | no_evidence


def release_decision(
    candidate: Mapping[str, float],
    current: Mapping[str, float] | None,
    new_items: int,
    tolerance: float = 0.0,
) -> Decision:
    """The release rule.

    1. No current model: release (``first``).
    2. Candidate NDCG@10 on the held-out cases >= current's - ``tolerance``: release (``better``).
    3. Otherwise, when the candidate knows items the current model cannot recommend, release
       anyway (``new_items``): a catalogue that lags behind the shop costs more than a small
       drop on cases that the new items are not yet part of.
    4. Otherwise hold it back (``worse``, or ``no_evidence`` when there were no held-out cases).
    """
    if current is None:
        return Decision(True, "first")
    have = candidate.get("NDCG@10")
    if have is not None and math.isfinite(have) and have >= current.get("NDCG@10", 0.0) - tolerance:
        return Decision(True, "better")
    if new_items > 0:
        return Decision(True, "new_items")
    return Decision(False, "worse" if have is not None else "no_evidence")
