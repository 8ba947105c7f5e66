"""Read JSON event lines, validate every line, and produce them all-or-nothing (or dead-letter).

Default policy: the whole input is validated before anything is sent; if any line is bad, every
bad line is reported and **nothing** is produced, so fixing the file and running the command again
never duplicates the good lines. With ``dlq_topic`` set, good lines are produced and each bad line
goes to the dead-letter topic with its line number and reason instead.
"""

from __future__ import annotations

import json
import struct
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from connectors.kafka.dead_letters import dead_letter
from connectors.sdk.events import Event, InvalidEvent, parse_event
from connectors.sdk.producer import EventProducer
from schemas import EncodeError
from streamrec.errors import BadData

_LEN = struct.Struct(">II")


class BadLines(BadData):
    """Some input lines are not valid events, so nothing was produced (all or nothing).

    Exit code 1, not BadData's 2: ``streamrec produce`` has always exited 1 here, as its
    documentation says, and scripts tell this outcome apart by it.
    """

    exit_code = 1


@dataclass
class BadLine:
    """A line that is not a valid event."""

    line_no: int
    reason: str
    raw: bytes


@dataclass
class IngestReport:
    """What an ingest run read and sent."""

    lines: int = 0
    produced: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    users: set[str] = field(default_factory=set)
    bad: list[BadLine] = field(default_factory=list)
    dead_lettered: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.produced / self.seconds if self.seconds > 0 else 0.0


def parse_lines(lines: Iterable[bytes]) -> Iterator[tuple[int, Event | BadLine]]:
    """Number and validate lines (1-based); blank lines are skipped."""
    for line_no, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            yield line_no, parse_event(json.loads(text))
        except json.JSONDecodeError as exc:
            yield line_no, BadLine(line_no, f"malformed JSON: {exc.msg} at column {exc.colno}",
                                   text)
        except InvalidEvent as exc:
            yield line_no, BadLine(line_no, str(exc), text)


class _Spool:
    """Encoded records kept on disk (past 64 MB) until the whole input has been validated."""

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)

    def add(self, key: bytes, value: bytes) -> None:
        self._file.write(_LEN.pack(len(key), len(value)) + key + value)

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        self._file.seek(0)
        while header := self._file.read(_LEN.size):
            klen, vlen = _LEN.unpack(header)
            yield self._file.read(klen), self._file.read(vlen)

    def close(self) -> None:
        self._file.close()


def ingest(
    lines: Iterable[bytes],
    producer: EventProducer,
    *,
    dlq_topic: str | None = None,
    source: str = "-",
    progress: Callable[[int], None] | None = None,
    pace: Callable[[], None] | None = None,
) -> IngestReport:
    """Validate and produce JSON event lines under the policy in the module docstring."""
    report = IngestReport()
    started = time.monotonic()
    spool = _Spool()
    try:
        for line_no, item in parse_lines(lines):
            report.lines = line_no
            if progress:
                progress(line_no)
            if isinstance(item, Event):
                try:
                    spool.add(item.user_id.encode(), producer.encode(item))
                except EncodeError as exc:
                    report.bad.append(BadLine(line_no, str(exc), b""))
                    continue
                report.by_type[item.type] += 1
                report.users.add(item.user_id)
            else:
                report.bad.append(item)
        if report.bad and dlq_topic is None:
            return report  # all or nothing: something is wrong, so nothing is sent
        for key, value in spool.records():
            if pace:
                pace()
            producer.produce(producer.topic, key, value)
            report.produced += 1
        for bad in report.bad if dlq_topic else []:
            _send_dead_letter(producer, dlq_topic, bad, source)
            report.dead_lettered += 1
        producer.flush()
    finally:
        spool.close()
        report.seconds = time.monotonic() - started
    return report


def _send_dead_letter(producer: EventProducer, topic: str, bad: BadLine, source: str) -> None:
    record = dead_letter(stage="input", reason=f"line {bad.line_no}: {bad.reason}",
                         error_type="InvalidEvent", value=bad.raw,
                         source=f"produce:{source}:{bad.line_no}")
    producer.produce(topic, None, producer.codec.write(record))
