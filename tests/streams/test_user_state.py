"""User state: bounded history, idempotent application by source offset, compact bytes."""

from __future__ import annotations

from streams.user_state import MAX_QUERY_BUCKETS, UserState


def _click(i: int, item: str | None = None) -> dict:
    return {"event_id": f"e{i}", "type": "click", "item_id": item or f"i{i}", "timestamp": i}


def test_applies_clicks_and_searches_in_order_with_bounded_history() -> None:
    state = UserState()
    for i in range(10):
        assert state.apply(_click(i), partition=2, offset=i, buckets=[], history_len=4)
    search = {"event_id": "s", "type": "search", "query": "q", "timestamp": 99}
    assert state.apply(search, 2, 10, buckets=list(range(1, 40)), history_len=4)
    assert state.items == ["i6", "i7", "i8", "i9"]
    assert state.query_buckets == list(range(40 - MAX_QUERY_BUCKETS, 40))
    assert (state.clicks, state.searches) == (10, 1)
    assert (state.last_event_id, state.last_event_time, state.offset) == ("s", 99, 10)


def test_redelivered_events_are_not_applied_twice() -> None:
    state = UserState()
    for i in range(5):
        state.apply(_click(i), 1, 100 + i, [], 50)
    before = state.to_bytes()
    # A crash makes Kafka deliver offsets 102..104 again: nothing may change.
    for i in range(2, 5):
        assert not state.apply(_click(i), 1, 100 + i, [], 50)
    assert state.to_bytes() == before
    assert state.apply(_click(5), 1, 105, [], 50)
    assert state.clicks == 6


def test_bytes_round_trip_and_empty_means_new_user() -> None:
    state = UserState()
    state.apply(_click(1), 0, 7, [], 50)
    assert UserState.from_bytes(state.to_bytes()) == state
    assert UserState.from_bytes(None) == UserState()
    assert len(state.to_bytes()) < 200
