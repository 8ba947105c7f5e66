"""A synthetic shop's click and search stream, so the demo runs without the public datasets.

It imitates the shape of real e-commerce logs, in the same event format as
``connectors.datasets.readers``:

- items sit in categories of uneven size; item popularity is Zipf-like (a few hits, a long tail);
- every item has a few "next" items, mostly from its own category and one from a related category
  (phone -> case): what people look at after it. This is the sequential signal a model must learn,
  and it is strong enough that a next-item model clearly beats popularity;
- users like a few categories; activity is log-normal (a few heavy users, many light ones);
- sessions of a few events seconds to minutes apart, hours to days between sessions;
- a search names a category in words ("cheap wireless headphones"); the next click is in it.

The stream comes out in timestamp order (per user strictly increasing) and is the same for the
same config and seed.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate, product

import numpy as np

from streamrec.errors import ConfigError

Event = dict[str, object]

ADJECTIVES = ("running", "leather", "wireless", "kids", "organic", "vintage", "smart", "outdoor",
              "cotton", "gaming", "travel", "waterproof", "ceramic", "electric", "wooden", "mini",
              "classic", "sports", "winter", "summer", "portable", "steel", "silk", "baby")
NOUNS = ("shoes", "jacket", "headphones", "phone", "case", "lamp", "backpack", "watch", "mug",
         "chair", "desk", "shirt", "dress", "socks", "blanket", "pillow", "kettle", "camera",
         "speaker", "keyboard", "mouse", "tent", "bottle", "sunglasses", "scarf", "gloves", "tea",
         "coffee", "toy", "puzzle", "book", "charger", "cable", "vase", "plant", "soap")
MODIFIERS = ("cheap", "best", "new", "sale", "premium", "gift", "black", "large")

# How the next click follows the previous one: the item's own "next" list, its category, or a
# jump to another category the user likes. Position weights within the "next" list fall off.
P_FOLLOW, P_SAME_CATEGORY = 0.65, 0.20
NEXT_CUM = tuple(accumulate((0.35, 0.25, 0.15, 0.10, 0.15)))  # last one: the related category
MEAN_SESSION_EVENTS = 5.0


class SyntheticConfigError(ConfigError, ValueError):
    """Sizes, seed or share that cannot make a synthetic shop; names the option to change."""


_CHANGE_IT = "; change the matching option of `streamrec dataset generate`"


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate: sizes, seed, the share of searches and the time span."""

    users: int
    items: int
    events: int
    seed: int = 0
    search_share: float = 0.1
    start_ms: int = 1_700_000_000_000  # 2023-11-14T22:13:20Z: fixed, so output is reproducible
    days: float = 30.0  # sessions of each user spread over about this many days

    def __post_init__(self) -> None:
        if self.users < 1 or self.items < 2 or self.events < 1:
            raise SyntheticConfigError(
                f"need users >= 1, items >= 2 and events >= 1, got users={self.users}, "
                f"items={self.items}, events={self.events}{_CHANGE_IT}")
        if not 0.0 <= self.search_share < 1.0:
            raise SyntheticConfigError(
                f"search_share must be in [0, 1), got {self.search_share}{_CHANGE_IT}")
        if self.seed < 0 or self.days <= 0:
            raise SyntheticConfigError(
                f"need seed >= 0 and days > 0, got {self.seed} and {self.days}{_CHANGE_IT}")


@dataclass(frozen=True)
class Catalogue:
    """Items, their categories and popularity, and each item's "next" items."""

    category_words: list[tuple[str, str]]  # category -> (adjective, noun)
    category_of: list[int]  # item -> its category
    members: list[list[int]]  # category -> its items
    members_cum: list[list[float]]  # category -> cumulative popularity of its items
    categories_cum: list[float]  # cumulative popularity of the categories
    nexts: list[list[int]]  # item -> the items people look at after it, most likely first

    def popular_in(self, category: int, rng: random.Random) -> int:
        """An item of the category, drawn by popularity."""
        cum = self.members_cum[category]
        return self.members[category][bisect(cum, rng.random() * cum[-1])]

    def popular_category(self, rng: random.Random) -> int:
        """A category drawn by popularity."""
        return bisect(self.categories_cum, rng.random() * self.categories_cum[-1])


def build_catalogue(items: int, rng: np.random.Generator) -> Catalogue:
    """A catalogue of ``items`` items in about one category per hundred items."""
    names = list(product(ADJECTIVES, NOUNS))
    n_categories = min(len(names), max(2, items // 100))
    words = [names[i] for i in rng.permutation(len(names))[:n_categories]]
    popularity = 1.0 / rng.permutation(np.arange(1, items + 1)) ** 1.0  # Zipf over random ranks
    category_weight = 1.0 / np.arange(1, n_categories + 1) ** 0.8  # uneven category sizes
    category_of = rng.choice(n_categories, size=items, p=_normed(category_weight))
    category_of[:n_categories] = np.arange(n_categories)  # no category left empty
    members = [np.flatnonzero(category_of == c) for c in range(n_categories)]
    related = (np.arange(n_categories) + rng.integers(1, n_categories, n_categories)) % n_categories
    nexts = np.empty((items, len(NEXT_CUM)), dtype=np.int64)
    for c, own in enumerate(members):
        # Flatter than popularity, so "next" items reach into the tail, where popularity fails.
        flat = popularity[own] ** 0.5
        nexts[own, :-1] = rng.choice(own, size=(len(own), len(NEXT_CUM) - 1), p=_normed(flat))
        other = members[related[c]]
        nexts[own, -1] = rng.choice(other, size=len(own), p=_normed(popularity[other]))
    return Catalogue(
        category_words=words,
        category_of=category_of.tolist(),
        members=[own.tolist() for own in members],
        members_cum=[np.cumsum(popularity[own]).tolist() for own in members],
        categories_cum=np.cumsum([popularity[own].sum() for own in members]).tolist(),
        nexts=nexts.tolist(),
    )


def _normed(weights: np.ndarray) -> np.ndarray:
    """Weights scaled to sum to one."""
    return weights / weights.sum()


class _User:
    """Where one simulated user is: events left, the current session, the last item clicked."""

    __slots__ = ("index", "left", "count", "sizes", "starts", "session", "session_left",
                 "last_item", "want_category", "tastes", "tastes_cum")

    def __init__(self, index: int, sizes: list[int], starts: list[int], tastes: list[int],
                 weights: list[float]) -> None:
        self.index, self.left, self.count = index, sum(sizes), 0
        self.sizes, self.starts = sizes, starts  # per session: events, start offset (ms)
        self.session, self.session_left = -1, 0
        self.last_item: int | None = None
        self.want_category: int | None = None
        self.tastes, self.tastes_cum = tastes, list(accumulate(weights))

    def liked_category(self, rng: random.Random) -> int:
        """One of the categories this user likes, by how much."""
        return self.tastes[bisect(self.tastes_cum, rng.random() * self.tastes_cum[-1])]

    def start_session(self) -> int:
        """Open the next session, with no last item; return its planned start offset (ms)."""
        self.session += 1
        self.session_left = self.sizes[self.session]
        self.last_item, self.want_category = None, None
        return self.starts[self.session]


def _sessions(budget: int, span_ms: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Session sizes summing to ``budget`` and their start offsets, sorted, within the span."""
    if budget == 0:
        return [], []
    sizes = rng.geometric(1.0 / MEAN_SESSION_EVENTS, size=budget)
    ends = np.cumsum(sizes)
    count = int(np.searchsorted(ends, budget)) + 1  # the first sessions that reach the budget
    sizes = sizes[:count]
    sizes[-1] -= ends[count - 1] - budget
    starts = np.sort(rng.uniform(0.0, span_ms, count)).round().astype(np.int64)
    return sizes.tolist(), starts.tolist()


def _make_users(config: SyntheticConfig, catalogue: Catalogue,
                rng: np.random.Generator) -> list[_User]:
    """The users with their sessions (events summing to ``config.events``) and tastes."""
    base = min(2, config.events // config.users)  # everyone gets a short history when possible
    activity = rng.lognormal(0.0, 1.0, config.users)
    budgets = base + rng.multinomial(config.events - base * config.users, _normed(activity))
    popularity = np.diff(catalogue.categories_cum, prepend=0.0)
    users = []
    for index, budget in enumerate(budgets.tolist()):
        k = min(len(popularity), 1 + int(rng.poisson(1.5)))
        tastes = rng.choice(len(popularity), size=k, replace=False, p=_normed(popularity))
        sizes, starts = _sessions(budget, config.days * 86_400_000, rng)
        users.append(_User(index, sizes, starts, tastes.tolist(),
                           rng.dirichlet(np.ones(k)).tolist()))
    return users


def _next_item(user: _User, catalogue: Catalogue, rng: random.Random) -> int:
    """The item the user clicks next, given the last one and any category just searched for."""
    if user.want_category is not None:
        category, user.want_category = user.want_category, None
        return catalogue.popular_in(category, rng)
    last, draw = user.last_item, rng.random()
    if last is not None and draw < P_FOLLOW:
        return catalogue.nexts[last][bisect(NEXT_CUM, rng.random() * NEXT_CUM[-1])]
    if last is not None and draw < P_FOLLOW + P_SAME_CATEGORY:
        return catalogue.popular_in(catalogue.category_of[last], rng)
    return catalogue.popular_in(user.liked_category(rng), rng)



def _query(catalogue: Catalogue, category: int, rng: random.Random) -> str:
    """Search words for a category, as people type them: the noun, often its adjective."""
    adjective, noun = catalogue.category_words[category]
    words = [adjective, noun] if rng.random() < 0.7 else [noun]
    if rng.random() < 0.25:
        words.insert(0, rng.choice(MODIFIERS))
    return " ".join(words)


def _step(user: _User, ts: int, config: SyntheticConfig, catalogue: Catalogue,
          rng: random.Random) -> Event:
    """The user's next event at ``ts``: a search (choosing the next click's category) or a click."""
    event: Event = {"type": "click", "user_id": f"u{user.index}"}
    if rng.random() < config.search_share:
        category = user.liked_category(rng) if rng.random() < 0.8 else \
            catalogue.popular_category(rng)
        user.want_category = category
        event["type"], event["query"] = "search", _query(catalogue, category, rng)
    else:
        user.last_item = _next_item(user, catalogue, rng)
        event["item_id"] = f"i{user.last_item}"
    event["session_id"] = f"u{user.index}-{user.session}"
    event["timestamp"] = ts
    event["event_id"] = f"synthetic:{config.seed}:u{user.index}:{user.count}"
    user.count += 1
    user.left -= 1
    user.session_left -= 1
    return event


def _gap_ms(user: _User, now_ms: int, config: SyntheticConfig, rng: random.Random) -> int:
    """Time to the user's next event: seconds to minutes within a session, else the next
    session's start (at least half an hour later, as sessions are cut by idle time)."""
    if user.session_left > 0:
        return max(1000, round(1000 * rng.lognormvariate(math.log(30.0), 0.9)))
    start_ms = config.start_ms + user.start_session()
    return max(1_800_000, start_ms - now_ms)


def generate_events(config: SyntheticConfig) -> Iterator[Event]:
    """Synthetic events in timestamp order, exactly ``config.events`` of them."""
    np_rng = np.random.default_rng(config.seed)
    catalogue = build_catalogue(config.items, np_rng)
    users = _make_users(config, catalogue, np_rng)
    rng = random.Random(config.seed)
    # A heap of (next event time, user index): the stream interleaves users as a shop sees them.
    heap = []
    for user in users:
        if user.left:
            heap.append((config.start_ms + user.start_session(), user.index))
    heapq.heapify(heap)
    while heap:
        ts, index = heap[0]
        user = users[index]
        yield _step(user, ts, config, catalogue, rng)
        if user.left:
            heapq.heapreplace(heap, (ts + _gap_ms(user, ts, config, rng), index))
        else:
            heapq.heappop(heap)
