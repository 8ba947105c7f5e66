"""What every dataset reader shares: the event shape, row parsing, and malformed-row reports."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamrec.errors import BadData

Event = dict[str, Any]



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


class EventIds:
    """Deterministic event ids ``<format>:<key>:<n>``, with n counting from 0 per key."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.counts: dict[str, int] = {}

    def next(self, key: str) -> str:
        n = self.counts.get(key, 0)
        self.counts[key] = n + 1
        return f"{self.fmt}:{key}:{n}"


def make_event(kind: str, user: str, value: str, event_id: str, *, session: str | None = None,
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


def report_bad(on_bad: OnBad, path: Path, line: int, reason: object) -> None:
    """Raise the malformed row, or hand it to the caller that asked to skip such rows."""
    error = MalformedRow(path, line, str(reason))
    if on_bad is None:
        raise error
    on_bad(error)


def data_lines(path: Path, header: str | None, on_bad: OnBad) -> Iterator[tuple[int, str]]:
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
                report_bad(on_bad, path, lineno, "blank line")
                continue
            yield lineno, text


def split_fields(text: str, sep: str, count: int) -> list[str]:
    """The ``count`` fields of a separated line, or ValueError saying how many there are."""
    fields = text.split(sep)
    if len(fields) != count:
        raise ValueError(f"expected {count} fields separated by {sep!r}, found {len(fields)}")
    return fields


def parse_id(text: str, what: str) -> str:
    """An id field as given, refusing empty ones and ones with spaces around them."""
    if not text or text.strip() != text:
        raise ValueError(f"{what} {text!r} is empty or has spaces around it")
    return text


def parse_count(text: str, what: str) -> int:
    """A non-negative integer field."""
    if not text.isdigit():
        raise ValueError(f"{what} {text!r} is not a non-negative integer")
    return int(text)


def seconds_to_ms(text: str) -> int:
    """Unix seconds (possibly fractional) as epoch milliseconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"time {text!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"time {text!r} is not a non-negative finite number of seconds")
    return round(seconds * 1000)
