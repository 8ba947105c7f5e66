"""Readers of the session and search logs: OTTO (JSON lines) and JDsearch (tab-separated)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path

from connectors.datasets.rows import (
    Event,
    EventIds,
    OnBad,
    data_lines,
    make_event,
    parse_count,
    parse_id,
    report_bad,
    split_fields,
)

# JDsearch keeps only the gaps (seconds) between a user's behaviours. We place every user's test
# query at this instant and count back, so each user's order and gaps are real, the dates are not.
JD_TEST_QUERY_MS = 1_672_531_200_000  # 2023-01-01T00:00:00Z


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


def read_otto(files: list[Path], on_bad: OnBad) -> Iterator[Event]:
    """OTTO sessions, JSON lines; carts and orders become clicks with an ``action`` context."""
    ids = EventIds("otto")
    for path in files:
        for lineno, text in data_lines(path, None, on_bad):
            try:
                session, steps = _otto_session(text)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError too
                report_bad(on_bad, path, lineno, exc)
                continue
            for item, ts, action in steps:
                context = {"action": action} if action else None
                yield make_event("click", f"otto-{session}", item, ids.next(session),
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


def _jd_user(fields: list[str], row: int, ids: EventIds) -> list[Event]:
    """All events of one JDsearch user (one line), checked as a whole before any is used.

    History: a search (when the behaviour had a query) then the click, cart, order or follow.
    Then the test query and the candidates the user interacted with (``context.split = test``).
    """
    user, key = f"jd-{row}", str(row)
    query, cands, labels, h_queries, h_wids, h_types, h_gaps = fields
    queries, wids, types = _jd_list(h_queries), _jd_list(h_wids), _jd_list(h_types)
    gaps = [parse_count(g, "history_time_list entry") for g in _jd_list(h_gaps)]
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
            events.append(make_event("search", user, terms, ids.next(key), ts=ts))
        action = _JD_ACTIONS[kind]
        events.append(make_event("click", user, parse_id(wid, "history wid"), ids.next(key), ts=ts,
                             context={"action": action} if action else None))
    if (terms := _jd_query(query)) is not None:
        events.append(make_event("search", user, terms, ids.next(key), ts=times[-1],
                             context={"split": "test"}))
    for wid, mark in zip(candidates, marks, strict=True):
        if mark in _JD_LABELS:
            context = {"split": "test", **({"action": a} if (a := _JD_LABELS[mark]) else {})}
            events.append(make_event("click", user, parse_id(wid, "candidate wid"), ids.next(key),
                                 ts=times[-1], context=context))
    return events


def read_jdsearch(files: list[Path], on_bad: OnBad) -> Iterator[Event]:
    """JDsearch user behaviour: one user per line, history lists joined by ``_``."""
    ids = EventIds("jdsearch")
    for path in files:
        for lineno, text in data_lines(path, _JD_HEADER, on_bad):
            try:
                events = _jd_user(split_fields(text, "\t", 7), lineno - 1, ids)
            except ValueError as exc:
                report_bad(on_bad, path, lineno, exc)
                continue
            yield from events
