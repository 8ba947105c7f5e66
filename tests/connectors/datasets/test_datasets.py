"""The dataset converters on the real public files, their handling of bad rows, and the CLI."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path

import pytest

from connectors.datasets.readers import (
    FORMATS,
    DatasetError,
    Event,
    EventSummary,
    MalformedRow,
    read_events,
)
from connectors.datasets.search_logs import JD_TEST_QUERY_MS
from connectors.sdk.events import parse_event
from streamrec.cli import main

DATASETS = Path(__file__).resolve().parents[4] / "shared" / "datasets"
FOLDERS = {"yoochoose": "yoochoose-rsc15-100k", "diginetica": "diginetica-sample",
           "s3rec": "amazon-beauty-s3rec", "bert4rec": "amazon-beauty-bert4rec",
           "otto": "otto-sample", "jdsearch": "jdsearch-sample"}


def dataset(path: str) -> Path:
    """A path under the shared datasets folder, failing the test when it is not there."""
    full = DATASETS / path
    if not full.exists():
        pytest.fail(f"{full} is missing: these tests read the public datasets from the checkout's "
                    "sibling folder shared/datasets (see its README.md); put them there")
    return full


@cache
def converted(fmt: str, path: str) -> list[Event]:
    """All events of a dataset (read once per test session: the large ones take a second)."""
    return list(read_events(fmt, dataset(path)))


def summary(events: list[Event]) -> EventSummary:
    """The counts of a list of events."""
    result = EventSummary()
    for event in events:
        result.add(event)
    return result


def by_user(events: list[Event]) -> dict[str, list[Event]]:
    """Each user's events, in stream order."""
    users: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        users[event["user_id"]].append(event)
    return users


# Figures from shared/datasets/README.md. JDsearch: its README says "4 users" but the file has a
# header and 3 user lines; its 233 interactions are 230 history entries plus 3 test queries, and
# 104 with a query are 101 history searches plus the 3 test queries. We also emit the 5 candidates
# the users interacted with after their test query, hence 235 clicks.
FIGURES = [  # format, path, users, clicks, searches, items
    ("yoochoose", "yoochoose-rsc15-100k/yoochoose-clicks-100k_train_full.txt",
     17_794, 70_278, 0, 2_933),
    ("yoochoose", "yoochoose-rsc15-100k/yoochoose-clicks-100k_test.txt", 3_416, 13_568, 0, None),
    ("yoochoose", "yoochoose-rsc15-100k", 17_794 + 3_416, 70_278 + 13_568, 0, None),
    ("diginetica", "diginetica-sample", None, 12_391, 0, 7_139),
    ("s3rec", "amazon-beauty-s3rec", 22_363, 198_502, 0, 12_101),
    ("bert4rec", "amazon-beauty-bert4rec", 40_226, 353_962, 0, 54_542),
    ("otto", "otto-sample", 20, 862, 0, 510),
    ("jdsearch", "jdsearch-sample", 3, 230 + 5, 101 + 3, None),
]


@pytest.mark.parametrize(("fmt", "path", "users", "clicks", "searches", "items"), FIGURES)
def test_counts_match_the_published_figures(fmt, path, users, clicks, searches, items):
    counts = summary(converted(fmt, path))
    assert (counts.clicks, counts.searches) == (clicks, searches)
    if users is not None:
        assert len(counts.users) == users
    if items is not None:
        assert len(counts.items) == items


def test_diginetica_sessions_and_anonymous_users():
    events = converted("diginetica", FOLDERS["diginetica"])
    assert len({e["session_id"] for e in events}) == 2_986
    anonymous = {e["user_id"] for e in events if e["user_id"].startswith("dg-s")}
    known = {e["user_id"] for e in events} - anonymous
    assert (len(known), len(known) + len(anonymous)) == (1_270, 2_994)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_output_order_and_event_ids(fmt):
    events = converted(fmt, FOLDERS[fmt])
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids) and all(i.startswith(f"{fmt}:") for i in ids)
    if FORMATS[fmt].timed:
        times = [e["timestamp"] for e in events]
        assert times == sorted(times), "timed formats come out in global time order"
    else:
        assert all("timestamp" not in e for e in events)
        firsts = [e["user_id"] for e in events]
        runs = [u for i, u in enumerate(firsts) if i == 0 or firsts[i - 1] != u]
        assert len(runs) == len(set(runs)), "untimed formats come out user by user"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_event_passes_the_producers_validation(fmt):
    for event in converted(fmt, FOLDERS[fmt])[:20_000]:
        parsed = parse_event(event)
        assert (parsed.user_id, parsed.event_id) == (event["user_id"], event["event_id"])
        assert parsed.timestamp == event.get("timestamp", parsed.timestamp)


def test_yoochoose_keeps_each_session_as_in_the_file():
    path = dataset(f"{FOLDERS['yoochoose']}/yoochoose-clicks-100k_train_full.txt")
    expected: dict[str, list[tuple[str, int]]] = defaultdict(list)
    with path.open() as rows:
        for row in csv.DictReader(rows, delimiter="\t"):
            expected[f"yc-{row['SessionId']}"].append(
                (row["ItemId"], round(float(row["Time"]) * 1000)))
    got = by_user(converted("yoochoose", str(path.relative_to(DATASETS))))
    assert {u: [(e["item_id"], e["timestamp"]) for e in evs] for u, evs in got.items()} == expected


def test_diginetica_orders_views_by_date_and_timeframe():
    events = converted("diginetica", FOLDERS["diginetica"])
    first = next(e for e in events if e["session_id"] == "1")
    # Session 1's earliest view: timeframe 75848 ms on 2016-05-09 (the file lists it fourth).
    assert (first["item_id"], first["timestamp"]) == ("9654", 1_462_752_000_000 + 75_848)
    for user_events in by_user(events).values():
        times = [e["timestamp"] for e in user_events]
        assert times == sorted(times)


def test_s3rec_and_bert4rec_keep_each_users_sequence():
    s3rec = by_user(converted("s3rec", FOLDERS["s3rec"]))
    line = (DATASETS / FOLDERS["s3rec"] / "Beauty.txt").open().readline().split()
    assert [e["item_id"] for e in s3rec[f"s3rec-{line[0]}"]] == line[1:]
    bert = by_user(converted("bert4rec", FOLDERS["bert4rec"]))
    with (DATASETS / FOLDERS["bert4rec"] / "beauty.txt").open() as rows:
        first_user = [item for user, item in (r.split() for r in rows) if user == "1"]
    assert [e["item_id"] for e in bert["bert4rec-1"]] == first_user


def test_otto_actions_and_times_as_in_the_file():
    events = converted("otto", FOLDERS["otto"])
    actions = Counter(e.get("context", {}).get("action", "click") for e in events)
    assert actions == {"click": 800, "cart": 52, "order": 10}
    with (DATASETS / FOLDERS["otto"] / "train.jsonl").open() as lines:
        session = json.loads(next(lines))
    got = by_user(events)[f"otto-{session['session']}"]
    assert [(e["item_id"], e["timestamp"]) for e in got] == [
        (str(s["aid"]), s["ts"]) for s in session["events"]]


def test_jdsearch_searches_precede_their_clicks_and_gaps_are_kept():
    events = by_user(converted("jdsearch", FOLDERS["jdsearch"]))
    with (DATASETS / FOLDERS["jdsearch"] / "user_behavior_data_sample.txt").open() as rows:
        third = list(csv.DictReader(rows, delimiter="\t"))[2]
    history = [e for e in events["jd-3"] if "split" not in e.get("context", {})]
    gaps = [int(g) for g in third["history_time_list"].split("_")]
    assert [e["item_id"] for e in history] == third["history_wid_list"].split("_")
    assert [b["timestamp"] - a["timestamp"] for a, b in zip(history, history[1:], strict=False)] \
        == [1000 * g for g in gaps[1:-1]]
    test = [e for e in events["jd-3"] if e not in history]
    assert test[0] == {"type": "search", "user_id": "jd-3", "query": "2437437 60677689 39206305",
                       "timestamp": JD_TEST_QUERY_MS, "event_id": "jdsearch:3:2",
                       "context": {"split": "test"}}
    for user_events in events.values():
        for i, event in enumerate(user_events):
            if event["type"] == "search" and i + 1 < len(user_events):
                assert user_events[i + 1]["type"] == "click"
                assert user_events[i + 1]["timestamp"] == event["timestamp"]


def test_limit_users_keeps_the_first_users_in_file_order():
    events = list(read_events("s3rec", dataset(FOLDERS["s3rec"]), limit_users=3))
    assert list(by_user(events)) == ["s3rec-1", "s3rec-2", "s3rec-3"]
    timed = list(read_events("yoochoose", dataset(FOLDERS["yoochoose"]), limit_users=2))
    assert {e["user_id"] for e in timed} == {"yc-3", "yc-6"}  # the first two sessions of train_full


def test_conversion_is_deterministic():
    path = dataset(FOLDERS["otto"])
    assert list(read_events("otto", path)) == list(read_events("otto", path))


_JD_HEADER = ("query\tcandidate_wid_list\tcandidate_label_list\thistory_qry_list\t"
              "history_wid_list\thistory_type_list\thistory_time_list\n")
BROKEN = [  # format, file name, content, bad line, part of the reason, events from the good rows
    ("yoochoose", "clicks.txt", "SessionId\tItemId\tTime\n1\t5\t1.5\n1\tx\n", 3, "3 fields", 1),
    ("yoochoose", "clicks.txt", "SessionId\tItemId\tTime\n1\t5\tsoon\n2\t6\t2\n", 2, "'soon'", 1),
    ("diginetica", "views.csv", "session_id;user_id;item_id;timeframe;eventdate\n"
     "1;NA;5;10;2016-05-09\n1;NA;6;-3;2016-05-09\n", 3, "timeframe", 1),
    ("diginetica", "views.csv", "session_id;user_id;item_id;timeframe;eventdate\n"
     "1;NA;5;10;May 9\n", 2, "YYYY-MM-DD", 0),
    ("s3rec", "Beauty.txt", "1 2 3\n2\n3 4\n", 2, "at least one item", 3),
    ("bert4rec", "beauty.txt", "1 1\n1 2 3\n\n2 4\n", 2, "one item", 2),
    ("otto", "train.jsonl", '{"session":1,"events":[{"aid":7,"ts":5,"type":"clicks"}]}\n'
     '{"session":2,"events":[{"aid":8,"ts":6,"type":"views"}]}\n', 2, "event 0", 1),
    ("otto", "train.jsonl", "{not json\n", 1, "Expecting", 0),
    ("jdsearch", "behaviour.txt", _JD_HEADER + "9\t1_2\t1.0_0.0\t-1_5\x186\t7_8\tCLICK_ORD\t0_4_9\n"
     "9\t1\t1.0\t-1\t7_8\tCLICK\t0_4\n", 3, "history lists", 5),
]


@pytest.mark.parametrize(("fmt", "name", "content", "line", "reason", "good"), BROKEN)
def test_a_malformed_row_stops_or_is_reported(tmp_path, fmt, name, content, line, reason, good):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(MalformedRow) as raised:
        list(read_events(fmt, path))
    assert (raised.value.path, raised.value.line) == (path, line)
    assert reason in raised.value.reason
    skipped: list[MalformedRow] = []
    events = list(read_events(fmt, path, on_bad=skipped.append))
    assert len(events) == good
    assert line in [error.line for error in skipped]


def test_the_cli_stops_at_a_bad_row_unless_told_to_skip(tmp_path, capsys):
    path, out = tmp_path / "clicks.txt", tmp_path / "events.jsonl"
    path.write_text("SessionId\tItemId\tTime\n1\t5\t1.5\n1\tx\n2\t6\t3\n")
    assert main(["dataset", "convert", "--format", "yoochoose", str(path), "--out", str(out)]) == 2
    assert f"{path}:3" in capsys.readouterr().err and not out.exists()
    assert main(["dataset", "convert", "--format", "yoochoose", str(path), "--out", str(out),
                 "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert f"{path}:3" in err and "skipped 1 malformed rows" in err and "2 users" in err
    assert [json.loads(line)["item_id"] for line in out.read_text().splitlines()] == ["5", "6"]


def test_wrong_file_or_missing_path_says_what_to_do(tmp_path, capsys):
    with pytest.raises(DatasetError, match="expected the header"):
        list(read_events("jdsearch", dataset(f"{FOLDERS['otto']}/train.jsonl")))
    with pytest.raises(DatasetError, match="holds none of Beauty.txt"):
        read_events("s3rec", tmp_path)
    assert main(["dataset", "convert", "--format", "otto", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_cli_writes_json_lines_and_a_summary(tmp_path, capsys):
    out = tmp_path / "otto.jsonl"
    assert main(["dataset", "convert", "--format", "otto", str(dataset(FOLDERS["otto"])),
                 "--limit-users", "2", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {e["user_id"] for e in lines} == {"otto-0", "otto-1"}
    assert "2 users" in capsys.readouterr().err
