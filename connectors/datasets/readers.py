"""Read public interaction datasets as streamrec events, one dict per click or search.

Every reader yields the event shape the producer sends: ``{"type": "click"|"search", "user_id",
"item_id"|"query", "session_id"?, "timestamp"? (epoch ms), "event_id", "context"?}``. Formats with
real times come out globally ordered by timestamp (a stable sort, so each user's order holds and
events of equal time keep their file order); the others come out user by user in file order.

A malformed row raises :class:`MalformedRow` naming the file, line and reason. A caller that
passes ``on_bad`` receives it instead and the row is left out: that caller counts and reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from connectors.datasets.rows import (
    DatasetError,
    DatasetFormat,
    Event,
    EventIds,
    MalformedRow,
    OnBad,
    Reader,
    data_lines,
    make_event,
    parse_count,
    parse_id,
    report_bad,
    seconds_to_ms,
    split_fields,
)
from connectors.datasets.search_logs import read_jdsearch, read_otto

__all__ = ["FORMATS", "DatasetError", "DatasetFormat", "Event", "EventSummary", "MalformedRow",
           "dataset_files", "dataset_format", "read_events"]

def _read_yoochoose(files: list[Path], on_bad: OnBad) -> Iterator[Event]:
    """YooChoose clicks: ``SessionId<TAB>ItemId<TAB>Time`` (unix seconds); a session is a user."""
    ids = EventIds("yoochoose")
    for path in files:
        for lineno, text in data_lines(path, "SessionId\tItemId\tTime", on_bad):
            try:
                session, item, seconds = split_fields(text, "\t", 3)
                session, item, ts = parse_id(session, "SessionId"), parse_id(item, "ItemId"), \
                    seconds_to_ms(seconds)
            except ValueError as exc:
                report_bad(on_bad, path, lineno, exc)
                continue
            yield make_event("click", f"yc-{session}", item, ids.next(session), session=session,
                             ts=ts)


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
    ids, days = EventIds("diginetica"), {}
    for path in files:
        header = "session_id;user_id;item_id;timeframe;eventdate"
        for lineno, text in data_lines(path, header, on_bad):
            try:
                session, user, item, frame, day = split_fields(text, ";", 5)
                session, user, item = parse_id(session, "session_id"), parse_id(user, "user_id"), \
                    parse_id(item, "item_id")
                ts = _day_ms(day, days) + parse_count(frame, "timeframe")
            except ValueError as exc:
                report_bad(on_bad, path, lineno, exc)
                continue
            user_id = f"dg-s{session}" if user == "NA" else f"dg-{user}"
            yield make_event("click", user_id, item, ids.next(session), session=session, ts=ts)


def _read_item_lists(fmt: str, one_per_line: bool) -> Reader:
    """A reader of ``user item item ...`` lines (S3-Rec) or ``user item`` lines (BERT4Rec)."""

    def read(files: list[Path], on_bad: OnBad) -> Iterator[Event]:
        ids = EventIds(fmt)
        for path in files:
            for lineno, text in data_lines(path, None, on_bad):
                user, *items = text.split()
                if not items or (one_per_line and len(items) != 1):
                    want = "one item" if one_per_line else "at least one item"
                    report_bad(on_bad, path, lineno, f"user {user!r} needs {want} after it, "
                            f"found {len(items)}")
                    continue
                for item in items:
                    yield make_event("click", f"{fmt}-{user}", item, ids.next(user))

    read.__doc__ = f"{fmt} sequences: whitespace-separated user and item ids, no timestamps."
    return read


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
    DatasetFormat("otto", ("train.jsonl",), read_otto, True,
                  "OTTO sessions (clicks, carts, orders), JSON lines"),
    DatasetFormat("jdsearch", ("user_behavior_data_sample.txt",), read_jdsearch, True,
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
