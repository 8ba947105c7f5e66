"""Stream popularity: recent clicks outweigh old ones, seen items are excluded."""

from __future__ import annotations

from streams.popularity import DecayedPopularity


def test_ranks_by_count_and_excludes_seen_items() -> None:
    pop = DecayedPopularity(half_life=1_000_000)
    pop.add(["a"] * 5 + ["b"] * 3 + ["c"])
    assert [i for i, _ in pop.top(3)] == ["a", "b", "c"]
    assert [i for i, _ in pop.top(2, exclude=["a"])] == ["b", "c"]


def test_recent_clicks_outweigh_older_ones() -> None:
    pop = DecayedPopularity(half_life=10)
    pop.add(["old"] * 30)
    pop.add(["new"] * 20)  # fewer clicks, but 30 clicks ago counts for 1/8 of now
    assert pop.top(1)[0][0] == "new"


def test_rescaling_and_pruning_keep_the_ranking() -> None:
    pop = DecayedPopularity(half_life=2, max_items=10)
    for round_ in range(400):  # 800 clicks grow weights by 2**400: forces rescales
        pop.add(["hot", f"cold{round_}"])
    assert len(pop) <= 10
    assert pop.top(1)[0][0] == "hot"
