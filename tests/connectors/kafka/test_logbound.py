"""Bounded logs: repeated lines are written a few times per window, then summarised once."""

from __future__ import annotations

import logging

from connectors.kafka.logbound import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, msg: str, *args, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_flood_is_bounded_and_summarised() -> None:
    clock, left_out = Clock(), []
    bound = RepeatFilter(window_s=30, burst=2, clock=clock, on_left_out=left_out.append)
    written = 0
    for n in range(30_000):  # a thousand reconnect errors a second for 30 s
        clock.now = n / 1000
        written += bound.filter(_record("aiokafka.conn", "Unable connect to %r: %r",
                                        "node-1", f"attempt {n}"))
    assert written == 2 and len(left_out) == 29_998
    assert bound.flush() == []  # the window is still open
    clock.now = 31
    (summary,) = bound.flush()
    assert summary.name == "streamrec.logs" and summary.levelno == logging.ERROR
    assert summary.getMessage().startswith("29,998 more lines like this in 30 s from "
                                           "aiokafka.conn: Unable connect to 'node-1'")
    assert bound.flush() == []


def test_other_kinds_of_lines_are_not_held_back() -> None:
    clock = Clock()
    bound = RepeatFilter(window_s=30, burst=1, clock=clock)
    assert bound.filter(_record("a", "connect failed %s", "broker-1"))
    assert not bound.filter(_record("a", "connect failed %s", "broker-1"))
    assert bound.filter(_record("a", "connect failed %s", "broker-2"))  # another first argument
    assert bound.filter(_record("b", "connect failed %s", "broker-1"))  # another logger
    assert bound.filter(_record("a", "connect failed %s", "broker-1", level=logging.WARNING))
    clock.now = 30
    assert bound.filter(_record("a", "connect failed %s", "broker-1"))  # a new window
    assert [r.getMessage()[:1] for r in bound.flush()] == ["1"]  # the closed one's summary
