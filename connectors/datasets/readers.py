"""Read public interaction datasets as streamrec events, one dict per click or search.

Every reader yields the event shape the producer sends: ``{"type": "click"|"search", "user_id",
"item_id"|"query", "session_id"?, "timestamp"? (epoch ms), "event_id", "context"?}``. Formats with
real times come out globally ordered by timestamp (a stable sort, so each user's order holds and
events of equal time keep their file order); the others come out user by user in file order.

A malformed row raises :class:`MalformedRow` naming the file, line and reason. A caller that
passes ``on_bad`` receives it instead and the row is left out: that caller counts and reports.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import accumulate
from pathlib import Path
from typing import Any

from streamrec.errors import BadData

Event = dict[str, Any]

# JDsearch keeps only the gaps (seconds) between a user's behaviours. We place every user's test
# query at this instant and count back, so each user's order and gaps are real, the dates are not.
JD_TEST_QUERY_MS = 1_672_531_200_000  # 2023-01-01T00:00:00Z


class DatasetError(BadData, ValueError):
    """A dataset path or file that cannot be read as the format asked for."""


class MalformedRow(DatasetError):
    """One row of a dataset file that does not fit its format."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"malformed row at {path}:{line}: {reason}. Fix the file, or leave "
                         "malformed rows out (streamrec dataset convert --skip-bad counts and "
                         "reports them)")
        self.path, self.line, self.reason = path, line, reason

    @property
    def where(self) -> str:
        """``path:line: reason``, the row alone."""
        return f"{self.path}:{self.line}: {self.reason}"


OnBad = Callable[[MalformedRow], None] | None
Reader = Callable[[list[Path], OnBad], Iterator[Event]]


@dataclass(frozen=True)
class DatasetFormat:
    """How one public dataset is laid out and read."""

    name: str
    files: tuple[str, ...]  # what to read, in this order, when the path given is the folder
    read: Reader
    timed: bool  # has timestamps: output is ordered by time, not user by user
    about: str


class _EventIds:
    """Deterministic event ids ``<format>:<key>:<n>``, with n counting from 0 per key."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.counts: dict[str, int] = {}

    def next(self, key: str) -> str:
        n = self.counts.get(key, 0)
        self.counts[key] = n + 1
        return f"{self.fmt}:{key}:{n}"


def _event(kind: str, user: str, value: str, event_id: str, *, session: str | None = None,
           ts: int | None = None, context: dict[str, str] | None = None) -> Event:
    """One event dict with its keys in the documented order, optional ones left out when unset."""
    event: Event = {"type": kind, "user_id": user}
    event["item_id" if kind == "click" else "query"] = value
    if session is not None:
        event["session_id"] = session
    if ts is not None:
        event["timestamp"] = ts
    event["event_id"] = event_id
    if context:
        event["context"] = context
    return event


def _report(on_bad: OnBad, path: Path, line: int, reason: object) -> None:
    """Raise the malformed row, or hand it to the caller that asked to skip such rows."""
    error = MalformedRow(path, line, str(reason))
    if on_bad is None:
        raise error
    on_bad(error)


def _lines(path: Path, header: str | None, on_bad: OnBad) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) of a text file, after checking its header line if it has one."""
    try:
        lines = path.open(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from exc
    with lines:
        for lineno, raw in enumerate(lines, 1):
            text = raw.rstrip("\r\n")
            if lineno == 1 and header is not None:
                if text != header:
                    raise DatasetError(f"{path}: first line is {text[:120]!r}, expected the header "
                                       f"{header!r}: is this the right file for this format?")
                continue
            if not text.strip():
                _report(on_bad, path, lineno, "blank line")
                continue
            yield lineno, text


def _fields(text: str, sep: str, count: int) -> list[str]:
    """The ``count`` fields of a separated line, or ValueError saying how many there are."""
    fields = text.split(sep)
    if len(fields) != count:
        raise ValueError(f"expected {count} fields separated by {sep!r}, found {len(fields)}")
    return fields


def _id(text: str, what: str) -> str:
    """An id field as given, refusing empty ones and ones with spaces around them."""
    if not text or text.strip() != text:
        raise ValueError(f"{what} {text!r} is empty or has spaces around it")
    return text


def _count(text: str, what: str) -> int:
    """A non-negative integer field."""
    if not text.isdigit():
        raise ValueError(f"{what} {text!r} is not a non-negative integer")
    return int(text)


def _seconds_to_ms(text: str) -> int:
    """Unix seconds (possibly fractional) as epoch milliseconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"time {text!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"time {text!r} is not a non-negative finite number of seconds")
    return round(seconds * 1000)


def _read_yoochoose(files: list[Path], on_bad: OnBad) -> Iterator[Event]:
    """YooChoose clicks: ``SessionId<TAB>ItemId<TAB>Time`` (unix seconds); a session is a user."""
    ids = _EventIds("yoochoose")
    for path in files:
        for lineno, text in _lines(path, "SessionId\tItemId\tTime", on_bad):
            try:
                session, item, seconds = _fields(text, "\t", 3)
                session, item, ts = _id(session, "SessionId"), _id(item, "ItemId"), \
                    _seconds_to_ms(seconds)
            except ValueError as exc:
                _report(on_bad, path, lineno, exc)
                continue
            yield _event("click", f"yc-{session}", item, ids.next(session), session=session, ts=ts)


def _day_ms(day: str, cache: dict[str, int]) -> int:
    """Midnight UTC of an ISO date as epoch milliseconds (cached: a file repeats few dates)."""
    if day not in cache:
        try:
            midnight = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
        except ValueError:
            raise ValueError(f"eventdate {day!r} is not a YYYY-MM-DD date") from None
        cache[day] = int(midnight.timestamp()) * 1000
    return cache[day]


def _read_diginetica(files: list[Path], on_bad: OnBad) -> Iterator[Event]:
    """Diginetica item views: ``session_id;user_id;item_id;timeframe;eventdate``.

    The time of a view is its date's midnight UTC plus ``timeframe`` milliseconds; the file does
    not list a session's views in that order, the time sort of the output does. Anonymous sessions
    (user ``NA``) become their own user, ``dg-s<session>``.
    """
    ids, days = _EventIds("diginetica"), {}
    for path in files:
        for lineno, text in _lines(path, "session_id;user_id;item_id;timeframe;eventdate", on_bad):
            try:
                session, user, item, frame, day = _fields(text, ";", 5)
                session, user, item = _id(session, "session_id"), _id(user, "user_id"), \
                    _id(item, "item_id")
                ts = _day_ms(day, days) + _count(frame, "timeframe")
            except ValueError as exc:
                _report(on_bad, path, lineno, exc)
                continue
            user_id = f"dg-s{session}" if user == "NA" else f"dg-{user}"
            yield _event("click", user_id, item, ids.next(session), session=session, ts=ts)


def _read_item_lists(fmt: str, one_per_line: bool) -> Reader:
    """A reader of ``user item item ...`` lines (S3-Rec) or ``user item`` lines (BERT4Rec)."""

    def read(files: list[Path], on_bad: OnBad) -> Iterator[Event]:
        ids = _EventIds(fmt)
        for path in files:
            for lineno, text in _lines(path, None, on_bad):
                user, *items = text.split()
                if not items or (one_per_line and len(items) != 1):
                    want = "one item" if one_per_line else "at least one item"
                    _report(on_bad, path, lineno, f"user {user!r} needs {want} after it, "
                            f"found {len(items)}")
                    continue
                for item in items:
                    yield _event("click", f"{fmt}-{user}", item, ids.next(user))

    read.__doc__ = f"{fmt} sequences: whitespace-separated user and item ids, no timestamps."
    return read


_OTTO_ACTIONS = {"clicks": None, "carts": "cart", "orders": "order"}


def _otto_session(text: str) -> tuple[str, list[tuple[str, int, str | None]]]:
    """The session id and (aid, ts, action) steps of one OTTO line, all checked before use."""
    record = json.loads(text)
    if not isinstance(record, dict) or not isinstance(record.get("events"), list):
        raise ValueError('expected an object with "session" and an "events" list')
    session = record.get("session")
    if not isinstance(session, int):
        raise ValueError(f'"session" {session!r} is not an integer')
    steps = []
    for n, step in enumerate(record["events"]):
        aid, ts, kind = (step.get(k) for k in ("aid", "ts", "type")) if isinstance(step, dict) \
            else (None, None, None)
        if not isinstance(aid, int) or not isinstance(ts, int) or kind not in _OTTO_ACTIONS:
            raise ValueError(f"event {n} is not {{aid: int, ts: int, type: clicks|carts|orders}}: "
                             f"{json.dumps(step)[:120]}")
        steps.append((str(aid), ts, _OTTO_ACTIONS[kind]))
    return str(session), steps


def _read_otto(files: list[Path], on_bad: OnBad) -> Iterator[Event]:
    """OTTO sessions, JSON lines; carts and orders become clicks with an ``action`` context."""
    ids = _EventIds("otto")
    for path in files:
        for lineno, text in _lines(path, None, on_bad):
            try:
                session, steps = _otto_session(text)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError too
                _report(on_bad, path, lineno, exc)
                continue
            for item, ts, action in steps:
                context = {"action": action} if action else None
                yield _event("click", f"otto-{session}", item, ids.next(session),
                             session=session, ts=ts, context=context)


_JD_HEADER = ("query\tcandidate_wid_list\tcandidate_label_list\thistory_qry_list\t"
              "history_wid_list\thistory_type_list\thistory_time_list")
_JD_ACTIONS = {"CLICK": None, "CART": "cart", "ORD": "order", "FLW": "follow"}
_JD_LABELS = {"1.0": None, "2.0": "cart", "3.0": "order"}  # 0.0: shown, not interacted with


def _jd_list(text: str) -> list[str]:
    """A ``_``-joined JDsearch list (empty text is the empty list)."""
    return text.split("_") if text else []


def _jd_query(text: str) -> str | None:
    """A JDsearch query's term ids joined by spaces; None for a query-less behaviour (-1)."""
    if text in ("", "-1", "0"):
        return None
    terms = text.split("\x18")
    if not all(term.isdigit() for term in terms):
        raise ValueError(f"query {text[:80]!r} is not \\x18-separated term ids")
    return " ".join(terms)


def _jd_user(fields: list[str], row: int, ids: _EventIds) -> list[Event]:
    """All events of one JDsearch user (one line), checked as a whole before any is used.

    History: a search (when the behaviour had a query) then the click, cart, order or follow.
    Then the test query and the candidates the user interacted with (``context.split = test``).
    """
    user, key = f"jd-{row}", str(row)
    query, cands, labels, h_queries, h_wids, h_types, h_gaps = fields
    queries, wids, types = _jd_list(h_queries), _jd_list(h_wids), _jd_list(h_types)
    gaps = [_count(g, "history_time_list entry") for g in _jd_list(h_gaps)]
    if not len(queries) == len(wids) == len(types) == len(gaps) - 1:
        raise ValueError(f"history lists have {len(queries)}, {len(wids)}, {len(types)} entries "
                         f"and {len(gaps)} times: expected equal lengths and one time more")
    candidates, marks = _jd_list(cands), _jd_list(labels)
    if len(candidates) != len(marks) or not set(marks) <= {"0.0", *_JD_LABELS}:
        raise ValueError("candidate_label_list must give one label (0.0-3.0) per candidate")
    times = [JD_TEST_QUERY_MS - 1000 * (sum(gaps) - t) for t in accumulate(gaps)]
    events = []
    for q, wid, kind, ts in zip(queries, wids, types, times, strict=False):
        if kind not in _JD_ACTIONS:
            raise ValueError(f"history type {kind!r} is not one of {', '.join(_JD_ACTIONS)}")
        if (terms := _jd_query(q)) is not None:
            events.append(_event("search", user, terms, ids.next(key), ts=ts))
        action = _JD_ACTIONS[kind]
        events.append(_event("click", user, _id(wid, "history wid"), ids.next(key), ts=ts,
                             context={"action": action} if action else None))
    if (terms := _jd_query(query)) is not None:
        events.append(_event("search", user, terms, ids.next(key), ts=times[-1],
                             context={"split": "test"}))
    for wid, mark in zip(candidates, marks, strict=True):
        if mark in _JD_LABELS:
            context = {"split": "test", **({"action": a} if (a := _JD_LABELS[mark]) else {})}
            events.append(_event("click", user, _id(wid, "candidate wid"), ids.next(key),
                                 ts=times[-1], context=context))
    return events


def _read_jdsearch(files: list[Path], on_bad: OnBad) -> Iterator[Event]:
    """JDsearch user behaviour: one user per line, history lists joined by ``_``."""
    ids = _EventIds("jdsearch")
    for path in files:
        for lineno, text in _lines(path, _JD_HEADER, on_bad):
            try:
                events = _jd_user(_fields(text, "\t", 7), lineno - 1, ids)
            except ValueError as exc:
                _report(on_bad, path, lineno, exc)
                continue
            yield from events


FORMATS: dict[str, DatasetFormat] = {fmt.name: fmt for fmt in (
    DatasetFormat("yoochoose", ("yoochoose-clicks-100k_train_full.txt",
                                "yoochoose-clicks-100k_test.txt"), _read_yoochoose, True,
                  "YooChoose (RecSys Challenge 2015) clicks, SessionId/ItemId/Time"),
    DatasetFormat("diginetica", ("sample_train-item-views.csv",), _read_diginetica, True,
                  "Diginetica (CIKM Cup 2016) item views"),
    DatasetFormat("s3rec", ("Beauty.txt",), _read_item_lists("s3rec", False), False,
                  "S3-Rec preprocessing: 'user item item ...' per line"),
    DatasetFormat("bert4rec", ("beauty.txt",), _read_item_lists("bert4rec", True), False,
                  "BERT4Rec preprocessing: 'user item' per line"),
    DatasetFormat("otto", ("train.jsonl",), _read_otto, True,
                  "OTTO sessions (clicks, carts, orders), JSON lines"),
    DatasetFormat("jdsearch", ("user_behavior_data_sample.txt",), _read_jdsearch, True,
                  "JDsearch personalised product search, queries as term ids"),
)}


def dataset_format(name: str) -> DatasetFormat:
    """The format of that name, or DatasetError listing the known ones."""
    if name not in FORMATS:
        raise DatasetError(f"unknown dataset format {name!r}: choose one of {', '.join(FORMATS)}")
    return FORMATS[name]


def dataset_files(fmt: DatasetFormat, path: Path) -> list[Path]:
    """The files to read: the path itself, or the format's files present in that folder."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = [path / name for name in fmt.files if (path / name).is_file()]
        if found:
            return found
        raise DatasetError(f"{path} holds none of {', '.join(fmt.files)}: pass the {fmt.name} "
                           "file itself or the folder that holds it")
    raise DatasetError(f"{path} does not exist: pass the {fmt.name} file or its folder")


def read_events(format: str, path: str | Path, limit_users: int | None = None,
                on_bad: OnBad = None) -> Iterator[Event]:
    """Events of a public dataset, ordered by time where it has times, else user by user.

    ``limit_users`` keeps the first N users in file order. Malformed rows raise MalformedRow,
    or go to ``on_bad`` when given. The path and format are checked now, the rows as they are read.
    """
    fmt = dataset_format(format)
    if limit_users is not None and limit_users < 1:
        raise DatasetError(f"limit_users must be at least 1, not {limit_users}")
    files = dataset_files(fmt, Path(path))
    return _ordered(fmt, files, limit_users, on_bad)


def _ordered(fmt: DatasetFormat, files: list[Path], limit_users: int | None,
             on_bad: OnBad) -> Iterator[Event]:
    """The format's events limited to the first users, then in output order.

    Both orders hold the whole dataset in memory: about 1 KB per event, fine for the samples and
    a few million events; a full-size dump wants ``limit_users`` or a split file.
    """
    events = fmt.read(files, on_bad)
    if limit_users is not None:
        events = _first_users(events, limit_users)
    if fmt.timed:
        yield from sorted(events, key=lambda event: event["timestamp"])
    else:
        yield from _user_by_user(events)


def _first_users(events: Iterable[Event], limit: int) -> Iterator[Event]:
    """The events of the first ``limit`` users to appear."""
    users: set[str] = set()
    for event in events:
        user = event["user_id"]
        if user not in users:
            if len(users) == limit:
                continue
            users.add(user)
        yield event


def _user_by_user(events: Iterable[Event]) -> Iterator[Event]:
    """Events grouped by user, users in order of first appearance, each user's order kept."""
    by_user: dict[str, list[Event]] = {}
    for event in events:
        by_user.setdefault(event["user_id"], []).append(event)
    for user_events in by_user.values():
        yield from user_events


@dataclass
class EventSummary:
    """Running counts of an event stream: users, clicks, searches, items, time range."""

    users: set[str] = field(default_factory=set)
    items: set[str] = field(default_factory=set)
    clicks: int = 0
    searches: int = 0
    first_ms: int | None = None
    last_ms: int | None = None

    def add(self, event: Event) -> None:
        """Count one event."""
        self.users.add(event["user_id"])
        if event["type"] == "click":
            self.clicks += 1
            self.items.add(event["item_id"])
        else:
            self.searches += 1
        ts = event.get("timestamp")
        if ts is not None:
            self.first_ms = ts if self.first_ms is None else min(self.first_ms, ts)
            self.last_ms = ts if self.last_ms is None else max(self.last_ms, ts)

    @property
    def events(self) -> int:
        """Clicks and searches together."""
        return self.clicks + self.searches

    def describe(self) -> str:
        """One line for people: the counts and the time range in UTC."""
        span = "no timestamps"
        if self.first_ms is not None and self.last_ms is not None:
            first, last = (datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
                           for ms in (self.first_ms, self.last_ms))
            span = f"{first} .. {last} UTC"
        return (f"{len(self.users):,} users · {self.events:,} events ({self.clicks:,} clicks, "
                f"{self.searches:,} searches) · {len(self.items):,} items · {span}")
