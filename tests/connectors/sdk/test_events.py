"""The SDK's event rules: the same size limits the worker applies to what reaches the topic."""

from __future__ import annotations

import pytest

from connectors.sdk.events import LIMITS, InvalidEvent, parse_event, record_problem


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_each_text_field_is_bounded(name: str) -> None:
    event = {"type": "search" if name == "query" else "click", "user_id": "u",
             "item_id": None if name == "query" else "i", "query": "q" if name == "query"
             else None}
    event[name] = "x" * LIMITS[name]
    parse_event({k: v for k, v in event.items() if v is not None})  # at the limit: accepted
    event[name] = "x" * (LIMITS[name] + 1)
    with pytest.raises(InvalidEvent, match=f"'{name}' is .* characters long"):
        parse_event({k: v for k, v in event.items() if v is not None})


def test_context_is_bounded_by_entries_and_sizes() -> None:
    with pytest.raises(InvalidEvent, match="33 entries"):
        parse_event({"type": "click", "user_id": "u", "item_id": "i",
                     "context": {str(i): "v" for i in range(33)}})
    with pytest.raises(InvalidEvent, match="context.ip"):
        parse_event({"type": "click", "user_id": "u", "item_id": "i",
                     "context": {"ip": "1" * 1025}})


def test_a_decoded_record_gets_the_same_rules() -> None:
    record = parse_event({"type": "click", "user_id": "u", "item_id": "i"}).to_record()
    assert record_problem(record) is None
    assert "empty event_id" in record_problem(dict(record, event_id=""))
    assert "'item_id' is 257" in record_problem(dict(record, item_id="i" * 257))
