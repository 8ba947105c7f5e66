"""Bounded logs: a line that repeats is written a few times per window, then summarised.

During a broker outage the Kafka clients log every reconnect attempt: aiokafka about a thousand
ERROR lines a second, librdkafka a line per attempt and broker. ``RepeatFilter`` sits on the
worker's log handlers and lets each kind of line (logger, level, message template and first
argument) through ``burst`` times per ``window_s``; the rest are counted, and when the window
closes one line says how many were left out and shows the last of them::

    [streamrec.logs] 1,412 more lines like this in 30 s from aiokafka.conn: Unable connect ...

Lines are never dropped without that summary, and the ``streamrec_log_lines_suppressed_total``
metric counts them per logger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SUMMARY_LOGGER = "streamrec.logs"


@dataclass
class _Kind:
    opened: float
    written: int = 0
    left_out: int = 0
    last: logging.LogRecord | None = field(default=None, repr=False)


class RepeatFilter(logging.Filter):
    """A handler filter that bounds repeated lines (see the module docstring)."""

    def __init__(self, window_s: float = 30.0, burst: int = 2,
                 clock: Callable[[], float] = time.monotonic,
                 on_left_out: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.window_s = window_s
        self.burst = burst
        self.clock = clock
        self.on_left_out = on_left_out
        self._kinds: dict[tuple, _Kind] = {}
        self._lock = threading.Lock()
        self._summaries: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == SUMMARY_LOGGER:
            return True
        now = self.clock()
        key = _kind_of(record)
        with self._lock:
            kind = self._kinds.get(key)
            if kind is not None and now - kind.opened >= self.window_s:
                self._close(key, kind)
                kind = None
            if kind is None:
                kind = self._kinds[key] = _Kind(opened=now)
            if kind.written < self.burst:
                kind.written += 1
                return True
            kind.left_out += 1
            kind.last = record
        if self.on_left_out is not None:
            self.on_left_out(record.name)
        return False

    def flush(self) -> list[logging.LogRecord]:
        """Summaries of the windows that have closed; the caller logs them (a timer does)."""
        now = self.clock()
        with self._lock:
            for key, kind in list(self._kinds.items()):
                if now - kind.opened >= self.window_s:
                    self._close(key, kind)
            out, self._summaries = self._summaries, []
        return out

    def _close(self, key: tuple, kind: _Kind) -> None:
        del self._kinds[key]
        if kind.left_out and kind.last is not None:
            last = kind.last
            text = last.getMessage()
            text = text if len(text) <= 300 else text[:297] + "..."
            self._summaries.append(logging.LogRecord(
                SUMMARY_LOGGER, last.levelno, last.pathname, last.lineno,
                "%s more lines like this in %.0f s from %s: %s",
                (f"{kind.left_out:,}", self.window_s, last.name, text), None))


def _kind_of(record: logging.LogRecord) -> tuple:
    first = record.args[0] if isinstance(record.args, tuple) and record.args else None
    if not isinstance(first, str | int) or isinstance(first, str) and len(first) > 40:
        first = None
    return record.name, record.levelno, str(record.msg)[:200], first


def install(filter_: RepeatFilter) -> None:
    """Put ``filter_`` on every handler of the root logger (mode's, once the worker runs)."""
    for handler in logging.getLogger().handlers:
        if filter_ not in handler.filters:
            handler.addFilter(filter_)


def emit_summaries(filter_: RepeatFilter) -> None:
    """Log the summaries of the windows that closed."""
    logger = logging.getLogger(SUMMARY_LOGGER)
    for record in filter_.flush():
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
