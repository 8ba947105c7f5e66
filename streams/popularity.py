"""Item popularity counted from the stream itself, for users the model cannot score yet."""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class DecayedPopularity:
    """Click counts that halve every ``half_life`` clicks, so the ranking follows recent traffic.

    Instead of decaying every count on every click, each click's weight grows by the same factor;
    counts are rescaled before the weights could overflow.
    """

    def __init__(self, half_life: int = 20_000, max_items: int = 200_000) -> None:
        self._growth = 2.0 ** (1.0 / half_life)
        self._weight = 1.0
        self._counts: dict[str, float] = {}
        self._max_items = max_items

    def add(self, items: Iterable[str]) -> None:
        """Count clicks on these items (in order)."""
        for item in items:
            self._weight *= self._growth
            self._counts[item] = self._counts.get(item, 0.0) + self._weight
        if self._weight > 1e100:
            self._rescale()
        if len(self._counts) > self._max_items:
            self._prune()

    def top(self, k: int, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """The ``k`` most popular items not in ``exclude``, with normalised scores."""
        skip = set(exclude)
        best = heapq.nlargest(k + len(skip), self._counts.items(), key=lambda kv: kv[1])
        return [(item, count / self._weight) for item, count in best if item not in skip][:k]

    def __len__(self) -> int:
        return len(self._counts)

    def _rescale(self) -> None:
        self._counts = {item: c / self._weight for item, c in self._counts.items()}
        self._weight = 1.0

    def _prune(self) -> None:
        keep = heapq.nlargest(self._max_items // 2, self._counts.items(), key=lambda kv: kv[1])
        self._counts = dict(keep)
