"""Training batches: next-item targets at every position, users shuffled (optionally grouped by
length, for less padding)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """Left-padded inputs and their next-item targets (0 where there is none)."""

    inputs: np.ndarray  # (B, L) int64
    targets: np.ndarray  # (B, L) int64
    queries: np.ndarray | None  # (B, L, Q) int64 search buckets before each target


def training_batches(
    seqs: list[np.ndarray],
    queries: list[list[list[int]]] | None,
    max_len: int,
    max_query_tokens: int,
    batch_size: int,
    rng: np.random.Generator,
    by_length: bool = False,
) -> Iterator[Batch]:
    """One epoch of batches of shuffled users.

    With ``by_length``, users of similar length share a batch: less padding, but each batch's
    mean loss then weighs a short user's positions far more than a long user's. On Beauty
    (BERT4Rec files) that cost about 15% of validation HR@10 against plain shuffling.
    """
    users = [u for u, s in enumerate(seqs) if len(s) >= 2]
    order = rng.permutation(len(users))
    if not by_length:
        for start in range(0, len(order), batch_size):
            chunk = [users[i] for i in order[start : start + batch_size]]
            yield make_batch(chunk, seqs, queries, max_len, max_query_tokens)
        return
    pool = 50 * batch_size  # sort within pools so batches stay random across pools
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted((users[i] for i in order[start : start + pool]), key=lambda u: len(seqs[u]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    for b in rng.permutation(len(batches)):
        yield make_batch(batches[b], seqs, queries, max_len, max_query_tokens)


def make_batch(
    users: list[int],
    seqs: list[np.ndarray],
    queries: list[list[list[int]]] | None,
    max_len: int,
    max_query_tokens: int,
) -> Batch:
    """Inputs ``s[:-1]`` and targets ``s[1:]`` of each user's last ``max_len + 1`` items."""
    length = min(max_len, max(len(seqs[u]) for u in users) - 1)
    inputs = np.zeros((len(users), length), dtype=np.int64)
    targets = np.zeros((len(users), length), dtype=np.int64)
    q = np.zeros((len(users), length, max_query_tokens), dtype=np.int64) if queries else None
    for row, u in enumerate(users):
        s = seqs[u][-(length + 1) :]
        n = len(s) - 1
        inputs[row, length - n :] = s[:-1]
        targets[row, length - n :] = s[1:]
        if q is not None and queries is not None:
            ctx = queries[u][-n:]  # the context of each target click
            for t, tokens in enumerate(ctx):
                tokens = tokens[-max_query_tokens:]
                if tokens:
                    q[row, length - n + t, max_query_tokens - len(tokens) :] = tokens
    return Batch(inputs, targets, q)


def pad_left(seqs: list[np.ndarray], width: int) -> np.ndarray:
    """Stack the last ``width`` items of each sequence, left-padded with 0: (B, width) int64."""
    out = np.zeros((len(seqs), max(1, width)), dtype=np.int64)
    for row, s in enumerate(seqs):
        s = s[-width:] if width else s[:0]
        if len(s):
            out[row, out.shape[1] - len(s) :] = s
    return out
