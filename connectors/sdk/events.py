"""Typed user events and the rules that turn a client's JSON object into one.

A JSON event line looks like::

    {"type": "click"|"search", "user_id": str, "item_id": str (click), "query": str (search),
     "session_id": str?, "timestamp": ISO-8601 str or epoch-ms int?, "event_id": str?,
     "context": {str: str}?}

Unknown keys are refused (they are usually typos). A missing timestamp means "now"; a missing
event_id gets a random one, so clients that may resend should set their own.

Field sizes are bounded (``LIMITS``, in characters; ``context`` also by entries): the producer
refuses a larger event and the worker dead-letters one that reached the topic anyway, so no
event can grow a user's state record past what one Kafka message may hold.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from streamrec.errors import BadData

EventType = Literal["click", "search"]
FIELDS = {"type", "user_id", "item_id", "query", "session_id", "timestamp", "event_id", "context"}
# Sanity range for epoch-ms: 2000-01-01 .. 2100-01-01; catches seconds passed as milliseconds.
_MIN_MS, _MAX_MS = 946_684_800_000, 4_102_444_800_000
# The longest each text field may be, in characters (the README's "Event limits").
LIMITS = {"event_id": 128, "user_id": 256, "item_id": 256, "query": 1000, "session_id": 256}
CONTEXT_MAX_ENTRIES = 32
CONTEXT_KEY_MAX, CONTEXT_VALUE_MAX = 64, 1024


class InvalidEvent(BadData, ValueError):
    """A JSON event that breaks the rules; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Event:
    """One click or search of one user, as it travels on the ``events`` topic."""

    type: EventType
    user_id: str
    timestamp: int  # event time, ms since the Unix epoch (UTC)
    event_id: str
    item_id: str | None = None
    query: str | None = None
    session_id: str | None = None
    context: dict[str, str] = field(default_factory=dict)

    @classmethod
    def click(cls, user_id: str, item_id: str, **kw: Any) -> Event:
        """A click, with ``timestamp`` and ``event_id`` defaulted to now and a random id."""
        return parse_event({"type": "click", "user_id": user_id, "item_id": item_id, **kw})

    @classmethod
    def search(cls, user_id: str, query: str, **kw: Any) -> Event:
        """A search, with ``timestamp`` and ``event_id`` defaulted to now and a random id."""
        return parse_event({"type": "search", "user_id": user_id, "query": query, **kw})

    def to_record(self) -> dict[str, Any]:
        """The Avro ``UserEvent`` record of this event."""
        return {
            "event_id": self.event_id, "user_id": self.user_id, "type": self.type,
            "item_id": self.item_id, "query": self.query, "session_id": self.session_id,
            "timestamp": self.timestamp, "context": dict(self.context),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Event:
        """The event of a decoded ``UserEvent`` record."""
        return cls(**record)


def parse_event(obj: Any) -> Event:
    """Validate a decoded JSON value and return the Event; raise InvalidEvent on any problem."""
    if not isinstance(obj, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - FIELDS)
    if unknown:
        raise InvalidEvent(f"unknown field(s) {unknown}; allowed: {sorted(FIELDS)}")
    kind = obj.get("type")
    if kind not in ("click", "search"):
        raise InvalidEvent(f"'type' must be \"click\" or \"search\", got {kind!r}")
    user_id = _text(obj, "user_id", required=True)
    item_id = _text(obj, "item_id", required=kind == "click")
    query = _text(obj, "query", required=kind == "search")
    if kind == "click" and query is not None:
        raise InvalidEvent("a click has no 'query' (send a separate search event)")
    if kind == "search" and item_id is not None:
        raise InvalidEvent("a search has no 'item_id'")
    return Event(
        type=kind,
        user_id=user_id,  # type: ignore[arg-type]
        timestamp=parse_timestamp(obj.get("timestamp")),
        event_id=_text(obj, "event_id") or uuid.uuid4().hex,
        item_id=item_id,
        query=query,
        session_id=_text(obj, "session_id"),
        context=_context(obj.get("context")),
    )


def _text(obj: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidEvent(f"'{name}' is required for a {obj.get('type')} event")
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"'{name}' must be a string, got {type(value).__name__} {value!r}")
    if required and not value.strip():
        raise InvalidEvent(f"'{name}' must not be empty")
    if len(value) > LIMITS[name]:
        raise InvalidEvent(_too_long(name, value, LIMITS[name]))
    return value


def _context(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(f"'context' must be an object of strings, got {type(value).__name__}")
    for key, val in value.items():
        if not isinstance(val, str):
            raise InvalidEvent(f"'context.{key}' must be a string, got {type(val).__name__}")
    problem = context_problem(value)
    if problem:
        raise InvalidEvent(problem)
    return dict(value)


def _too_long(name: str, value: str, limit: int) -> str:
    return f"'{name}' is {len(value):,} characters long; at most {limit:,} are allowed"


def context_problem(context: dict[str, str]) -> str | None:
    """What makes a context too large (None if nothing)."""
    if len(context) > CONTEXT_MAX_ENTRIES:
        return (f"'context' has {len(context):,} entries; at most {CONTEXT_MAX_ENTRIES} "
                "are allowed")
    for key, val in context.items():
        if len(key) > CONTEXT_KEY_MAX:
            return _too_long(f"context key {key[:20]!r}...", key, CONTEXT_KEY_MAX)
        if len(val) > CONTEXT_VALUE_MAX:
            return _too_long(f"context.{key}", val, CONTEXT_VALUE_MAX)
    return None


def record_problem(record: dict[str, Any]) -> str | None:
    """What makes a decoded ``UserEvent`` record unusable by the worker (None if nothing).

    The same rules as ``parse_event`` for what a well-formed Avro record can still get wrong:
    empty required fields and sizes beyond ``LIMITS``.
    """
    kind = record["type"]
    if not record["event_id"]:
        return "empty event_id: producers must give every event an id (the SDK makes one)"
    if not record["user_id"]:
        return "empty user_id"
    if kind == "click" and not record["item_id"]:
        return "click without item_id"
    if kind == "search" and not record["query"]:
        return "search without query"
    for name, limit in LIMITS.items():
        value = record[name]
        if value is not None and len(value) > limit:
            return _too_long(name, value, limit)
    return context_problem(record["context"])


def parse_timestamp(value: Any) -> int:
    """Epoch-ms from an ISO-8601 string or an epoch-ms integer; ``None`` means now."""
    if value is None:
        return int(time.time() * 1000)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidEvent(f"'timestamp' must be ISO-8601 text or epoch-ms integer, got {value!r}")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(f"'timestamp' {value!r} is not ISO-8601") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)  # naive times are taken as UTC
        value = int(parsed.timestamp() * 1000)
    if not _MIN_MS <= value < _MAX_MS:
        raise InvalidEvent(
            f"'timestamp' {value} is outside 2000..2100 as epoch milliseconds "
            "(seconds instead of milliseconds?)"
        )
    return value
