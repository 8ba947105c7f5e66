"""The synthetic event generator: exact, reproducible, realistic in shape, and learnable."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from functools import cache

import pytest

from connectors.datasets.synthetic import (
    ADJECTIVES,
    MODIFIERS,
    NOUNS,
    SyntheticConfig,
    generate_events,
)
from connectors.sdk.events import parse_event
from streamrec.cli import main

CONFIG = SyntheticConfig(users=1_500, items=1_000, events=40_000, seed=7)


@cache
def stream(config: SyntheticConfig = CONFIG) -> list[dict]:
    """The generated events of a config (generated once per test session)."""
    return list(generate_events(config))


def test_same_seed_same_events_other_seed_other_events():
    small = SyntheticConfig(users=50, items=200, events=2_000, seed=1)
    assert list(generate_events(small)) == list(generate_events(small))
    other = SyntheticConfig(users=50, items=200, events=2_000, seed=2)
    assert list(generate_events(other)) != list(generate_events(small))


def test_sizes_order_and_shares():
    events = stream()
    assert len(events) == CONFIG.events
    assert len({e["user_id"] for e in events}) == CONFIG.users
    times = [e["timestamp"] for e in events]
    assert times == sorted(times)
    assert times[-1] - times[0] <= (CONFIG.days + 1) * 86_400_000
    per_user = defaultdict(list)
    for event in events:
        per_user[event["user_id"]].append(event["timestamp"])
    assert all(a < b for ts in per_user.values() for a, b in zip(ts, ts[1:], strict=False))
    searches = [e for e in events if e["type"] == "search"]
    assert abs(len(searches) / len(events) - CONFIG.search_share) < 0.01
    vocabulary = set(ADJECTIVES) | set(NOUNS) | set(MODIFIERS)
    assert all(set(e["query"].split()) <= vocabulary for e in searches)
    assert len({e["event_id"] for e in events}) == len(events)
    assert all(parse_event(e).timestamp == e["timestamp"] for e in events[:5_000])


def test_popularity_is_skewed_like_a_shop():
    clicks = Counter(e["item_id"] for e in stream() if e["type"] == "click")
    top_share = sum(n for _, n in clicks.most_common(len(clicks) // 10)) / clicks.total()
    assert 0.35 < top_share < 0.9, "the top tenth of items should take a large, not total, share"


def hit_rates(events: list[dict]) -> tuple[float, float]:
    """HR@10 of popularity and of a first-order Markov chain on each user's last click."""
    sequences = defaultdict(list)
    for event in events:
        if event["type"] == "click":
            sequences[event["user_id"]].append(event["item_id"])
    popularity, transitions, targets = Counter(), defaultdict(Counter), []
    for items in sequences.values():
        history = items[:-1]
        popularity.update(history)
        for a, b in zip(history, history[1:], strict=False):
            transitions[a][b] += 1
        if history:
            targets.append((history[-1], items[-1]))
    top = [item for item, _ in popularity.most_common(10)]
    markov_hits = 0
    for last, target in targets:
        guesses = [item for item, _ in transitions[last].most_common(10)]
        guesses += [item for item in top if item not in guesses][: 10 - len(guesses)]
        markov_hits += target in guesses
    popular_hits = sum(target in top for _, target in targets)
    return popular_hits / len(targets), markov_hits / len(targets)


def test_next_item_structure_beats_popularity_by_far():
    popular, markov = hit_rates(stream())
    assert markov > 2 * popular and markov - popular > 0.2, (popular, markov)


def test_generate_rejects_bad_options(capsys):
    argv = ["dataset", "generate", "--users", "5", "--items", "10", "--events", "20"]
    with pytest.raises(SystemExit):
        main([*argv, "--users", "0"])  # argparse: not a positive number
    assert main([*argv, "--search-share", "1.5"]) == 2
    assert main([*argv, "--seed", "-1"]) == 2
    err = capsys.readouterr().err
    assert "search_share must be in [0, 1)" in err and "need seed >= 0" in err


def test_generate_cli_writes_the_same_file_twice(tmp_path, capsys):
    argv = ["dataset", "generate", "--users", "20", "--items", "50", "--events", "300"]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main([*argv, "--out", str(first)]) == 0
    assert main([*argv, "--out", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    assert len([json.loads(line) for line in first.read_text().splitlines()]) == 300
    assert "20 users" in capsys.readouterr().err
