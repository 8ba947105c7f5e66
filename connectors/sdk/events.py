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

``Event`` is a pydantic model: its field types hold the rules, ``parse_event`` validates through
it and words pydantic's findings as one line that names the field and the fix. The worker checks
already-decoded records with ``record_problem`` instead, a hand check over the same ``LIMITS``
that is several times cheaper than validating a model, once per record on its hot path.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from streamrec.errors import BadData

EventType = Literal["click", "search"]
# Sanity range for epoch-ms: 2000-01-01 .. 2100-01-01; catches seconds passed as milliseconds.
_MIN_MS, _MAX_MS = 946_684_800_000, 4_102_444_800_000
# The longest each text field may be, in characters (the README's "Event limits").
LIMITS = {"event_id": 128, "user_id": 256, "item_id": 256, "query": 1000, "session_id": 256}
CONTEXT_MAX_ENTRIES = 32
CONTEXT_KEY_MAX, CONTEXT_VALUE_MAX = 64, 1024


class InvalidEvent(BadData, ValueError):
    """A JSON event that breaks the rules; the message says which field and why."""


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


def _id_or_new(value: Any) -> Any:
    # An empty id is as good as none: the SDK makes one rather than send an unusable event.
    return uuid.uuid4().hex if value is None or value == "" else value


def _empty_if_none(value: Any) -> Any:
    return {} if value is None else value


def _text(name: str) -> Any:
    """A text field bounded by its entry in ``LIMITS``."""
    return Annotated[str, Field(max_length=LIMITS[name])]


Context = Annotated[
    dict[Annotated[str, Field(max_length=CONTEXT_KEY_MAX)],
         Annotated[str, Field(max_length=CONTEXT_VALUE_MAX)]],
    Field(max_length=CONTEXT_MAX_ENTRIES), BeforeValidator(_empty_if_none)]
# What each type of event must name, and the field it must leave out (with the fix).
_KIND_FIELDS = {
    "click": ("item_id", "query", "a click has no 'query' (send a separate search event)"),
    "search": ("query", "item_id", "a search has no 'item_id'"),
}


class Event(BaseModel):
    """One click or search of one user, as it travels on the ``events`` topic.

    Construct one with ``Event.click``/``Event.search`` or ``parse_event``; both fill the
    defaults (``timestamp``: now, ``event_id``: random) and raise ``InvalidEvent``.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: EventType
    user_id: _text("user_id")
    item_id: _text("item_id") | None = None
    query: _text("query") | None = None
    # Event time, ms since the Unix epoch (UTC); ISO-8601 text is converted, none means now.
    timestamp: Annotated[int, BeforeValidator(parse_timestamp)] = Field(None, validate_default=True)
    event_id: Annotated[_text("event_id"), BeforeValidator(_id_or_new)] = Field(
        None, validate_default=True)
    session_id: _text("session_id") | None = None
    context: Context = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fits_its_type(self) -> Event:
        """A click names an item and no query; a search has a query and names no item."""
        needs, refuses, refusal = _KIND_FIELDS[self.type]
        for name in ("user_id", needs):
            value = getattr(self, name)
            if value is None:
                raise InvalidEvent(f"'{name}' is required for a {self.type} event")
            if not value.strip():
                raise InvalidEvent(f"'{name}' must not be empty")
        if getattr(self, refuses) is not None:
            raise InvalidEvent(refusal)
        return self

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
        """The event of a decoded ``UserEvent`` record (the schema typed it: not re-checked)."""
        return cls.model_construct(**record)


FIELDS = frozenset(Event.model_fields)


def parse_event(obj: Any) -> Event:
    """Validate a decoded JSON value and return the Event; raise InvalidEvent on any problem."""
    try:
        return Event.model_validate(obj)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        raise InvalidEvent(f"unknown field(s) {unknown}; allowed: {sorted(FIELDS)}") from None
    raise InvalidEvent(_reason(errors[0], obj)) from None


def _reason(error: ErrorDetails, obj: Any) -> str:
    """One line, in the SDK's words, for what the model found wrong first."""
    kind, loc, value = error["type"], error["loc"], error["input"]
    if kind == "value_error":  # one of the rules above, worded where it is checked
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if kind == "model_type":
        return f"expected a JSON object, got {type(value).__name__}"
    if not loc:
        return error["msg"]
    if loc[0] == "type":
        return f"'type' must be \"click\" or \"search\", got {obj.get('type')!r}"
    name = _field_name(loc)
    if kind == "missing" or (kind == "string_type" and value is None):
        return f"'{name}' is required for a {obj.get('type')} event"
    if kind == "string_type":
        return f"'{name}' must be a string, got {type(value).__name__} {_shown(value)}"
    if kind == "string_too_long":
        return _too_long(name, value, error["ctx"]["max_length"])
    if kind == "dict_type":
        return f"'{name}' must be an object of strings, got {type(value).__name__}"
    if kind == "too_long":
        return (f"'{name}' has {len(value):,} entries; at most {error['ctx']['max_length']} "
                "are allowed")
    return f"'{name}': {error['msg']}"


def _field_name(loc: tuple[int | str, ...]) -> str:
    """``user_id``, ``context.<key>`` for a context value, ``context key '<key>'...`` for a key."""
    if len(loc) == 3:
        return f"context key {str(loc[1])[:20]!r}..."
    return ".".join(str(part) for part in loc)


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


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

    The rules of ``Event`` that a well-formed Avro record can still break: empty required
    fields and sizes beyond ``LIMITS``. The schema already fixed the types, so a hand check
    over the same limits does; it runs once per record on the worker's hot path, where
    validating a model would cost several times more.
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
