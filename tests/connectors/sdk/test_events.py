"""The SDK's event rules: the same size limits the worker applies to what reaches the topic."""

from __future__ import annotations

import pytest

from connectors.sdk.events import LIMITS, Event, InvalidEvent, parse_event, record_problem


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


@pytest.mark.parametrize(("obj", "message"), [
    ([1], "expected a JSON object, got list"),
    ({"typ": "click", "user_id": "u", "item_id": "i"}, "unknown field(s) ['typ']; allowed: "),
    ({"type": "view", "user_id": "u"}, "'type' must be \"click\" or \"search\", got 'view'"),
    ({"user_id": "u", "item_id": "i"}, "'type' must be \"click\" or \"search\", got None"),
    ({"type": "click", "item_id": "i"}, "'user_id' is required for a click event"),
    ({"type": "click", "user_id": None, "item_id": "i"}, "'user_id' is required for a click"),
    ({"type": "click", "user_id": 5, "item_id": "i"}, "'user_id' must be a string, got int 5"),
    ({"type": "click", "user_id": " ", "item_id": "i"}, "'user_id' must not be empty"),
    ({"type": "click", "user_id": "u"}, "'item_id' is required for a click event"),
    ({"type": "click", "user_id": "u", "item_id": ""}, "'item_id' must not be empty"),
    ({"type": "click", "user_id": "u", "item_id": "i", "query": "q"}, "a click has no 'query'"),
    ({"type": "search", "user_id": "u"}, "'query' is required for a search event"),
    ({"type": "search", "user_id": "u", "query": 42}, "'query' must be a string, got int 42"),
    ({"type": "search", "user_id": "u", "query": "q", "item_id": "i"},
     "a search has no 'item_id'"),
    ({"type": "click", "user_id": "u", "item_id": "i", "timestamp": "yesterday"},
     "'timestamp' 'yesterday' is not ISO-8601"),
    ({"type": "click", "user_id": "u", "item_id": "i", "timestamp": 1_700_000_000},
     "seconds instead of milliseconds?"),
    ({"type": "click", "user_id": "u", "item_id": "i", "timestamp": True},
     "'timestamp' must be ISO-8601 text or epoch-ms integer, got True"),
    ({"type": "click", "user_id": "u", "item_id": "i", "event_id": 7},
     "'event_id' must be a string, got int 7"),
    ({"type": "click", "user_id": "u", "item_id": "i", "context": [1]},
     "'context' must be an object of strings, got list"),
    ({"type": "click", "user_id": "u", "item_id": "i", "context": {"page": 1}},
     "'context.page' must be a string, got int"),
    ({"type": "click", "user_id": "u", "item_id": "i", "context": {"k" * 65: "v"}},
     "'context key 'kkkkkkkkkkkkkkkkkkkk'...' is 65 characters long; at most 64"),
])
def test_an_invalid_event_gets_one_line_naming_the_field(obj, message: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(obj)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_defaults_are_filled_and_a_record_reads_back_as_the_same_event() -> None:
    event = parse_event({"type": "search", "user_id": "u", "query": "red shoes",
                         "timestamp": "2024-05-01T12:00:00", "event_id": "", "context": None})
    assert event.timestamp == 1_714_564_800_000  # naive ISO time taken as UTC
    assert len(event.event_id) == 32 and event.context == {}
    assert Event.from_record(event.to_record()) == event
    click = Event.click("u", "i", session_id="s")
    assert (click.type, click.item_id, click.query, click.session_id) == ("click", "i", None, "s")
    with pytest.raises(InvalidEvent, match="'item_id' must not be empty"):
        Event.click("u", "")
