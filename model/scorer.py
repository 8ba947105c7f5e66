"""Serve top-K recommendations from a model artifact with ONNX Runtime (no torch import).

One session per artifact, opened at start-up; CUDA when really usable, else CPU; inputs checked
against the artifact; IO binding on CUDA; hot swap to a new artifact without failing a call.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from model.artifact import Artifact, load_artifact
from model.errors import ScorerError
from model.providers import CUDA_EP, choose_providers

log = logging.getLogger(__name__)

REQUIRED_OUTPUTS = ("top_ids", "top_scores")
CHUNK = 512  # most users per ONNX Runtime call
SCORE_CELLS = 1 << 25  # (users x catalogue) scores per call: 128 MB of float32
MASK_CELLS = 1 << 24  # (users x candidates x excluded) comparisons per call
# From here on, trade speed for memory (see _session_options). Measured at 1M items, 256 users,
# 2 cores: pre-packing on 0.43-0.85 s per call and 843 MB peak; off 1.27 s and 643 MB.
BIG_CATALOGUE = 5_000_000
# Calls of at most this many (users x catalogue) cells run on a one-thread session. Handing each
# of the graph's ~100 small operators to a second thread costs more than it saves there: at 12k
# items and 8 users, one thread takes 1.45 ms of wall and CPU time per call, two threads 1.75 ms
# of wall and 2.35 ms of CPU time (2 cores). Small calls are what a worker makes at moderate
# rates, where the CPU saved goes to the threads that carry events. Only catalogues where at least
# 8 users fit in a small call get the second session (it costs memory: 13 MB at 12k items).
SMALL_CALL_CELLS = 1 << 18


def _session_options(n_items: int, threads: int | None, low_memory: bool | None):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: placement notes are noise in a worker log
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting between calls: on a few cores the spinning threads take CPU from the
    # Kafka and event-loop threads that feed the next batch.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if low_memory if low_memory is not None else n_items >= BIG_CATALOGUE:
        # Pre-packing copies the (catalogue x dim) weight into a second layout; the arena keeps
        # the largest blocks ever allocated. Off, memory is lower and the product ~2x slower.
        opts.add_session_config_entry("session.disable_prepacking", "1")
        opts.enable_cpu_mem_arena = False
    return opts


@dataclass(frozen=True)
class _Loaded:
    """One artifact with its open session; immutable, so a call can keep using it after a swap."""

    artifact: Artifact
    session: ort.InferenceSession
    small: ort.InferenceSession | None  # one-thread session for small calls (SMALL_CALL_CELLS)
    provider: str
    index: dict[str, int]
    names: np.ndarray  # external item ids by index (object array: output ids map in one step)
    k: int
    max_len: int
    max_query_tokens: int
    n_query_buckets: int
    takes_k: bool  # k is an input of the graph (artifacts exported before that return loaded.k)

    @classmethod
    def open(cls, path: str | Path, device: str, threads: int | None, low_memory: bool | None):
        """Load, verify, open the session, check its signature, warm it up."""
        art = load_artifact(path)
        cfg = art.config
        opts = _session_options(cfg.n_items, threads, low_memory)
        providers: list = choose_providers(device)
        if providers[0] == CUDA_EP:
            providers[0] = (CUDA_EP, {"arena_extend_strategy": "kSameAsRequested"})
        session = ort.InferenceSession(str(art.onnx_path), opts, providers=providers)
        provider = session.get_providers()[0]
        if device == "cuda" and provider != CUDA_EP:
            raise ScorerError(f"asked for CUDA but onnxruntime gave {provider}; use device auto")
        _check_signature(art, session)
        small = None
        if (provider != CUDA_EP and threads != 1 and (os.cpu_count() or 1) > 1
                and 8 * (cfg.n_items + 1) <= SMALL_CALL_CELLS):
            small = ort.InferenceSession(
                str(art.onnx_path), _session_options(cfg.n_items, 1, low_memory),
                providers=[provider])
        index = {item: i for i, item in enumerate(art.item_ids) if i}
        loaded = cls(
            art,
            session,
            small,
            provider,
            index,
            np.array(art.item_ids, dtype=object),
            int(art.metadata["onnx"]["k"]),
            cfg.max_len,
            cfg.max_query_tokens,
            cfg.n_query_buckets,
            "k" in {i.name for i in session.get_inputs()},
        )
        loaded.warm_up()
        log.info("model %s ready on %s (%d items)", art.version, provider, cfg.n_items)
        return loaded

    def warm_up(self) -> None:
        """Run small and full-length batches once on each session, so the first real call is
        not slow."""
        for batch in (1, 32):
            seq = np.ones((batch, self.max_len), dtype=np.int64)
            queries = np.zeros((batch, 1), np.int64)
            if self.small is None:
                self.run(seq, queries, seq, REQUIRED_OUTPUTS)
                continue
            feeds = self.feeds(seq, queries, seq, self.k)
            for session in (self.small, self.session):
                session.run(list(REQUIRED_OUTPUTS), feeds)

    def feeds(self, seq, queries, exclude, k: int) -> dict[str, np.ndarray]:
        """The graph's inputs; ``k`` only where the graph takes it."""
        feeds = {"item_ids": seq, "query_buckets": queries, "exclude_ids": exclude}
        if self.takes_k:
            feeds["k"] = np.array([k], dtype=np.int64)
        return feeds

    def run(self, seq, queries, exclude, outputs: Sequence[str],
            k: int | None = None) -> list[np.ndarray]:
        """Run the graph on index arrays for the best ``k`` (default: all the graph serves);
        IO binding on CUDA keeps copies explicit."""
        feeds = self.feeds(seq, queries, exclude, self.k if k is None else k)
        if self.provider != CUDA_EP:
            return self.session_for(len(seq)).run(list(outputs), feeds)
        binding = self.session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in outputs:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def is_small(self, users: int) -> bool:
        """Whether a call for this many users is a small one (``SMALL_CALL_CELLS``)."""
        return users * (self.artifact.config.n_items + 1) <= SMALL_CALL_CELLS

    def session_for(self, users: int) -> ort.InferenceSession:
        """The session that runs a call for this many users."""
        if self.small is not None and self.is_small(users):
            return self.small
        return self.session


_Inputs = tuple[np.ndarray, np.ndarray, np.ndarray]  # item_ids, query_buckets, exclude_ids


@dataclass
class ScoringJob:
    """One batch for one model: index arrays in, (item id, score) lists out (``Scorer.prepare``)."""

    loaded: _Loaded
    k: int
    chunks: list[_Inputs]
    outputs: list[list[np.ndarray]] | None = None

    @property
    def version(self) -> str:
        """Version of the model this job runs, whatever is swapped in meanwhile."""
        return self.loaded.artifact.version

    @property
    def small(self) -> bool:
        """Whether the whole job is one small call (``SMALL_CALL_CELLS``): on CPU a millisecond
        or two, less than handing it to another thread and back costs a busy caller."""
        return self.loaded.is_small(sum(len(chunk[0]) for chunk in self.chunks))

    def run(self) -> ScoringJob:
        """Run the graph on every chunk (ONNX Runtime only; safe in any thread)."""
        self.outputs = [self.loaded.run(*chunk, REQUIRED_OUTPUTS, self.k)
                        for chunk in self.chunks]
        return self

    def results(self) -> list[list[tuple[str, float]]]:
        """Best ``k`` (item id, score) per user, in the order of the histories."""
        if self.outputs is None:
            raise RuntimeError("ScoringJob.results() before run()")
        out: list[list[tuple[str, float]]] = []
        for ids, scores in self.outputs:
            out += _decode_chunk(self.loaded, ids, scores, self.k)
        return out


def _check_signature(art: Artifact, session: ort.InferenceSession) -> None:
    """Fail, showing both lists, when the graph's inputs differ from the artifact's record."""
    want = [(i["name"], f"tensor({i['dtype']})") for i in art.metadata["onnx"]["inputs"]]
    have = [(i.name, i.type) for i in session.get_inputs()]
    if sorted(want) != sorted(have):
        raise ScorerError(
            f"model {art.version}: graph inputs {have} differ from the artifact's record {want}; "
            "the ONNX file does not belong to this metadata: re-export the artifact"
        )
    names = {o.name for o in session.get_outputs()}
    missing = [n for n in REQUIRED_OUTPUTS if n not in names]
    if missing:
        raise ScorerError(
            f"model {art.version}: graph lacks outputs {missing}; it has {sorted(names)}"
        )


class Scorer:
    """Top-K recommendations for batches of users; thread-safe, hot-swappable.

    An empty (or all-unknown) history gets the model's ranking for an empty sequence: the same
    list for every such user, the model's learned prior (close to popularity).
    """

    def __init__(
        self,
        artifact_dir: str | Path,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        threads: int | None = None,
        *,
        low_memory: bool | None = None,
    ) -> None:
        self._device = device
        self._threads = threads
        self._low_memory = low_memory
        self._swap_lock = threading.Lock()
        self._loaded = _Loaded.open(artifact_dir, device, threads, low_memory)

    @property
    def version(self) -> str:
        """Version of the artifact in service."""
        return self._loaded.artifact.version

    @property
    def provider(self) -> str:
        """``CUDAExecutionProvider`` or ``CPUExecutionProvider``."""
        return self._loaded.provider

    @property
    def max_len(self) -> int:
        """Most recent items of a history the model reads."""
        return self._loaded.max_len

    @property
    def k(self) -> int:
        """Largest k that ``top_k`` accepts (the k the graph was exported with)."""
        return self._loaded.k

    @property
    def n_query_buckets(self) -> int:
        """Bucket count the model was trained with; search buckets must lie in 1..this."""
        return self._loaded.n_query_buckets

    @property
    def artifact(self) -> Artifact:
        """The artifact in service."""
        return self._loaded.artifact

    def knows(self, item_id: str) -> bool:
        """Whether the model in service has this item in its catalogue."""
        return item_id in self._loaded.index

    def top_k(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        queries: Sequence[Sequence[int]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Best ``k`` (item id, score) per user, best first, never an item of the user's history.

        ``histories`` are external item ids, oldest first; unknown ids are skipped. ``queries``
        are search-token buckets (``model.tokens.token_buckets``) per user, oldest first.
        """
        return self.prepare(histories, k, queries).run().results()

    def prepare(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        queries: Sequence[Sequence[int]] | None = None,
    ) -> ScoringJob:
        """``top_k`` in three steps: this one (index arrays), ``run`` and ``results``.

        ``run`` is ONNX Runtime alone and releases the GIL, so a caller whose own thread is
        its bottleneck (the worker's event loop) hands only that step to another thread.
        """
        loaded = self._loaded  # one read: the whole job uses one model, even during a swap
        if not 1 <= k <= loaded.k:
            raise ValueError(f"k must be in 1..{loaded.k} (the k exported in the graph), got {k}")
        if queries is not None and len(queries) != len(histories):
            raise ValueError(f"{len(histories)} histories but {len(queries)} query lists")
        step = _chunk_size(loaded, max((len(h) for h in histories), default=0))
        chunks = []
        for start in range(0, len(histories), step):
            part_q = queries[start : start + step] if queries is not None else None
            chunks.append(_encode_chunk(loaded, histories[start : start + step], part_q))
        return ScoringJob(loaded, k, chunks)

    def run_raw(
        self,
        seq: np.ndarray,
        queries: np.ndarray,
        exclude: np.ndarray,
        outputs: Sequence[str] = REQUIRED_OUTPUTS,
    ) -> list[np.ndarray]:
        """Run the graph on index arrays (see ``model.export``), e.g. ``scores`` to evaluate."""
        return self._loaded.run(seq, queries, exclude, outputs)

    def swap(self, artifact_dir: str | Path) -> str:
        """Load, verify and warm a new artifact, then switch to it; on failure keep the old one."""
        with self._swap_lock:
            new = _Loaded.open(artifact_dir, self._device, self._threads, self._low_memory)
            old, self._loaded = self._loaded, new
        log.info("model switched from %s to %s", old.artifact.version, new.artifact.version)
        return new.artifact.version


def _chunk_size(loaded: _Loaded, longest: int) -> int:
    """Users per call, so that neither the score matrix nor the exclusion mask gets huge.

    Smaller calls also run faster on big catalogues: a 1 GB score matrix is page-faulted
    anew on every call when the memory arena is off.
    """
    excluded = longest + 1
    by_scores = SCORE_CELLS // (loaded.artifact.config.n_items + 1)
    by_mask = MASK_CELLS // ((loaded.k + excluded) * excluded)
    return max(1, min(CHUNK, by_scores, by_mask))


def _encode_chunk(loaded: _Loaded, histories, queries) -> _Inputs:
    """Index arrays of one chunk of users: (B, W) sequences, (B, Q) searches, (B, E) excluded."""
    index = loaded.index
    known = [[index[i] for i in h if i in index] for h in histories]
    longest = max(1, max(map(len, known), default=0))
    width = min(loaded.max_len, longest)
    seq = np.zeros((len(known), width), dtype=np.int64)
    # The whole history is excluded, not only the max_len items the model reads; repeated ids
    # are harmless (the graph scatters -inf), so no de-duplication.
    exclude = np.zeros((len(known), longest), dtype=np.int64)
    for row, s in enumerate(known):
        if s:
            recent = s[-width:]
            seq[row, width - len(recent) :] = recent
            exclude[row, : len(s)] = s
    return seq, _query_array(loaded, queries, len(known)), exclude


def _decode_chunk(loaded: _Loaded, ids: np.ndarray, scores: np.ndarray,
                  k: int) -> list[list[tuple[str, float]]]:
    """(item id, score) lists of one chunk; -inf (masked) entries and padding are dropped."""
    ids, scores = ids[:, :k], scores[:, :k]
    names = loaded.names[ids].tolist()
    if (ids != 0).all() and np.isfinite(scores).all():  # the usual case: nothing to drop
        return [list(zip(n, s, strict=True)) for n, s in zip(names, scores.tolist(), strict=True)]
    return [[(n, s) for i, n, s in zip(row_ids, row_names, row_scores, strict=True)
             if i and s != float("-inf")]
            for row_ids, row_names, row_scores in zip(ids.tolist(), names, scores.tolist(),
                                                      strict=True)]


def _query_array(loaded: _Loaded, queries, n_users: int) -> np.ndarray:
    """Left-padded (B, Q) buckets of each user's most recent search tokens."""
    width = loaded.max_query_tokens
    out = np.zeros((n_users, width), dtype=np.int64)
    if queries is None:
        return out[:, :1]
    for row, q in enumerate(queries):
        recent = list(q)[-width:]
        if any(not 0 <= b <= loaded.n_query_buckets for b in recent):
            raise ScorerError(
                f"search buckets must lie in 0..{loaded.n_query_buckets} for model "
                f"{loaded.artifact.version}, got {recent}: hash with the model's n_query_buckets"
            )
        if recent:
            out[row, width - len(recent) :] = recent
    return out
