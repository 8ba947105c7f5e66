"""Read interaction files into per-user sequences, map ids to indices, split leave-one-out.

No torch here: evaluation of an artifact runs on ONNX Runtime alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from model.tokens import normalize_query, token_buckets
from streamrec.errors import BadData

Format = Literal["s3rec", "bert4rec", "events"]
FORMATS: tuple[str, ...] = ("s3rec", "bert4rec", "events")


class DataError(BadData, ValueError):
    """An input file that cannot be read as the format it was said to be."""


@dataclass(frozen=True)
class Interactions:
    """Clicks per user in order; ``queries[u][t]`` are the search buckets seen before click t."""

    users: list[str]
    sequences: list[list[str]]
    queries: list[list[list[int]]] | None = None
    time_range: tuple[str, str] | None = None  # first and last event time (ISO-8601, UTC)


@dataclass(frozen=True)
class QueryHashing:
    """How search text becomes buckets: the secret key, the bucket count, tokens kept per click."""

    key: bytes
    n_buckets: int
    max_tokens: int = 16


def read_interactions(
    path: str | Path, fmt: Format, hashing: QueryHashing | None = None
) -> Interactions:
    """Read a dataset file of the given format (see ``streamrec train --help``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file {path} does not exist; pass the path of a {fmt} file")
    with path.open(encoding="utf-8") as fh:
        if fmt == "s3rec":
            return _read_s3rec(fh, path)
        if fmt == "bert4rec":
            return _read_pairs(fh, path)
        if fmt == "events":
            return _read_events(fh, path, hashing)
    raise DataError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _read_s3rec(lines: Iterable[str], path: Path) -> Interactions:
    users, seqs = [], []
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) < 2:
            if parts:
                raise DataError(f"{path}:{n}: expected 'user item item ...', got {line!r}")
            continue
        users.append(parts[0])
        seqs.append(parts[1:])
    return Interactions(users, seqs)


def _read_pairs(lines: Iterable[str], path: Path) -> Interactions:
    by_user: dict[str, list[str]] = {}
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) != 2:
            if parts:
                raise DataError(f"{path}:{n}: expected 'user item', got {line!r}")
            continue
        by_user.setdefault(parts[0], []).append(parts[1])
    return Interactions(list(by_user), list(by_user.values()))


def _read_events(lines: Iterable[str], path: Path, hashing: QueryHashing | None) -> Interactions:
    """Clicks become the sequence; a search's tokens join the user's recent-token window."""
    seqs: dict[str, list[str]] = {}
    ctx: dict[str, list[list[int]]] = {}
    recent: dict[str, list[int]] = {}
    times: list[datetime] = []
    for n, event in _json_lines(lines, path):
        if event.get("timestamp") is not None:
            times.append(_parse_time(event["timestamp"], f"{path}:{n}"))
        user = str(event.get("user_id", ""))
        kind = event.get("type")
        if not user or kind not in ("click", "search"):
            raise DataError(f"{path}:{n}: need 'user_id' and type 'click' or 'search': {event}")
        if kind == "click":
            item = str(event.get("item_id") or "")
            if not item:
                raise DataError(f"{path}:{n}: click without 'item_id': {event}")
            seqs.setdefault(user, []).append(item)
            ctx.setdefault(user, []).append(list(recent.get(user, ())))
        elif hashing is not None:
            buckets = _search_buckets(event, hashing, f"{path}:{n}")
            window = recent.setdefault(user, [])
            window.extend(buckets)
            del window[: max(0, len(window) - hashing.max_tokens)]
    users = list(seqs)
    queries = [ctx[u] for u in users] if hashing is not None else None
    span = (min(times).isoformat(), max(times).isoformat()) if times else None
    return Interactions(users, [seqs[u] for u in users], queries, span)


def _parse_time(value: object, where: str) -> datetime:
    """An event time: ISO-8601 text or epoch milliseconds, as an aware UTC datetime."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / 1000, UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise DataError(f"{where}: timestamp {value!r} is neither ISO-8601 nor epoch milliseconds")


def _json_lines(lines: Iterable[str], path: Path) -> Iterator[tuple[int, dict]]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(event, dict):
            raise DataError(f"{path}:{n}: expected a JSON object per line")
        yield n, event


def _search_buckets(event: dict, hashing: QueryHashing, where: str) -> list[int]:
    """Buckets of a search: hashed from ``query`` text, or given as ``query_buckets`` already."""
    if "query_buckets" in event:  # anonymised samples carry buckets, never text
        buckets = [int(b) for b in event["query_buckets"]]
        if any(not 1 <= b <= hashing.n_buckets for b in buckets):
            raise DataError(f"{where}: query_buckets outside 1..{hashing.n_buckets}")
        return buckets
    text = event.get("query")
    if not isinstance(text, str):
        raise DataError(f"{where}: search without a 'query' string")
    return token_buckets(normalize_query(text), hashing.key, hashing.n_buckets)


class Vocabulary:
    """External item ids (strings) <-> indices 1..N; index 0 is padding, shown as ''."""

    def __init__(self, item_ids: Sequence[str]) -> None:
        if not item_ids or item_ids[0] != "":
            raise ValueError("item_ids[0] must be '' (the padding index)")
        self.item_ids = list(item_ids)
        self.index = {item: i for i, item in enumerate(self.item_ids) if i}

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> Vocabulary:
        """Vocabulary of every item, in order of first appearance (deterministic)."""
        seen: dict[str, None] = {}
        for seq in sequences:
            seen.update(dict.fromkeys(seq))
        return cls(["", *seen])

    def __len__(self) -> int:
        """Number of real items (padding not counted)."""
        return len(self.item_ids) - 1

    def encode(self, seq: Iterable[str]) -> np.ndarray:
        """Indices of the known items of ``seq``, unknown ones dropped: (n,) int64."""
        index = self.index
        return np.fromiter((index[i] for i in seq if i in index), dtype=np.int64)


@dataclass(frozen=True)
class Split:
    """Leave-one-out: train on all but the last two items, validate on the 2nd-last, test last."""

    train: list[np.ndarray]  # per user, the training sequence
    train_queries: list[list[list[int]]] | None  # per user and training click, its search context
    val_users: np.ndarray  # users with a validation and a test target (>= 3 items)
    val_targets: np.ndarray
    test_targets: np.ndarray
    val_queries: np.ndarray | None  # (U, Q) search context of each target, left-padded
    test_queries: np.ndarray | None

    def val_inputs(self) -> list[np.ndarray]:
        """History given for the validation target: the training sequence."""
        return [self.train[u] for u in self.val_users]

    def test_inputs(self) -> list[np.ndarray]:
        """History given for the test target: training sequence plus the validation item."""
        pairs = zip(self.val_users, self.val_targets, strict=True)
        return [np.append(self.train[u], t) for u, t in pairs]


def leave_one_out(
    encoded: list[np.ndarray], queries: list[list[list[int]]] | None, max_query_tokens: int = 16
) -> Split:
    """Split encoded sequences; users with fewer than 3 items are only trained on."""
    train: list[np.ndarray] = []
    users: list[int] = []
    for u, seq in enumerate(encoded):
        cut = len(seq) - 2 if len(seq) >= 3 else len(seq)
        if cut < len(seq):
            users.append(u)
        train.append(seq[:cut])
    tq = [queries[u][: len(train[u])] for u in range(len(encoded))] if queries else None
    vq = _query_matrix([queries[u][-2] for u in users], max_query_tokens) if queries else None
    sq = _query_matrix([queries[u][-1] for u in users], max_query_tokens) if queries else None
    return Split(
        train,
        tq,
        np.asarray(users, dtype=np.int64),
        np.asarray([encoded[u][-2] for u in users], dtype=np.int64),
        np.asarray([encoded[u][-1] for u in users], dtype=np.int64),
        vq,
        sq,
    )


def _query_matrix(contexts: list[list[int]], width: int) -> np.ndarray:
    """Left-padded (U, width) matrix of each context's last ``width`` buckets."""
    out = np.zeros((len(contexts), width), dtype=np.int64)
    for row, ctx in enumerate(contexts):
        ctx = ctx[-width:]
        if ctx:
            out[row, width - len(ctx) :] = ctx
    return out
