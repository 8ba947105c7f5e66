"""Fault injection: bad records and rebalances while a normal stream flows (real brokers and
real worker processes).

Every bad record must reach the dead-letter topic exactly once with a reason, no worker may exit,
every good event must be counted once, and every user's latest recommendation must be caused by
that user's last event, on the topic and over HTTP.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Producer

from connectors.kafka.clients import consumer_config, producer_config
from connectors.sdk.producer import EventProducer
from connectors.sdk.subscriber import Subscriber
from schemas import default_codec
from streamrec.harness import WorkerProcess, http_get
from tests.integration.test_worker import (
    _await_recommendations,
    _last_event_per_user,
    _paced_produce,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CODEC = default_codec()


def _event(user: str, **fields) -> dict:
    record = {"event_id": f"bad-{user}-{time.monotonic_ns()}", "user_id": user, "type": "click",
              "item_id": "i1", "query": None, "session_id": None,
              "timestamp": int(time.time() * 1000), "context": {}}
    record.update(fields)
    return record


def _header_of(name: str) -> bytes:
    return CODEC.encode(name, {"user_id": "u", "items": [], "model_version": "v",
                               "strategy": "model", "cause_event_id": "e", "cause_event_time": 1,
                               "cause_ingest_time": 1, "produced_at": 1})[:10]


def bad_records() -> list[tuple[str, bytes | None, bytes | None]]:
    """(what, key, value) of every kind of bad record."""
    good = CODEC.encode("user_event", _event("poison-ok"))
    huge_item = "x" * 300_000
    records = [
        ("empty event_id", b"poison-1", CODEC.encode("user_event", _event("poison-1",
                                                                           event_id=""))),
        ("null key", None, CODEC.encode("user_event", _event("poison-2"))),
        ("key is not the user", b"someone-else", CODEC.encode("user_event",
                                                              _event("poison-3"))),
        ("empty user_id", b"", CODEC.encode("user_event", _event(""))),
        ("not Avro", b"poison-4", b"\x00garbage"),
        ("empty value", b"poison-4", b""),
        ("null value", b"poison-4", None),
        ("unknown schema fingerprint", b"poison-4", b"\xc3\x01" + b"\x07" * 8 + good[10:]),
        ("truncated body", b"poison-4", good[:14]),
        ("another record type", b"poison-4", _header_of("recommendation") + good[10:]),
        ("invalid UTF-8 in user_id", b"poison-4",
         good[:10] + good[10:].replace(b"poison-ok", b"poison\xff\xfe")),
        ("search without query", b"poison-5", CODEC.encode("user_event", _event(
            "poison-5", type="search", item_id=None))),
        ("huge query", b"poison-6", CODEC.encode("user_event", _event(
            "poison-6", type="search", item_id=None, query="q " * 100_000))),
        ("context of 5,000 entries", b"poison-7", CODEC.encode("user_event", _event(
            "poison-7", context={f"k{i}": "v" for i in range(5000)}))),
        ("a value just over 1 MB", b"poison-8", CODEC.encode("user_event", _event(
            "poison-8", context={"blob": "b" * 1_010_000}))),
        ("a 600 KB key", b"k" * 600_000, CODEC.encode("user_event", _event("poison-9"))),
    ]
    # Clicks with item ids of hundreds of kilobytes: the user's state would outgrow a message.
    records += [(f"huge item_id {n}", b"poison-10", CODEC.encode("user_event", _event(
        "poison-10", item_id=huge_item + str(n)))) for n in range(4)]
    return records


def _send_bad(kafka, topic: str) -> dict[tuple[int, int], str]:
    """Produce the bad records one by one; returns what each is, by (partition, offset)."""
    producer = Producer(producer_config(kafka.private, **{"message.max.bytes": 2_000_000}))
    where: dict[tuple[int, int], str] = {}
    for what, key, value in bad_records():
        reports: list = []
        producer.produce(topic, value=value, key=key,
                         on_delivery=lambda err, msg, out=reports: out.append((err, msg)))
        producer.flush(30)
        ((err, msg),) = reports
        assert err is None, f"{what}: {err}"
        where[(msg.partition(), msg.offset())] = what
    return where


def _stream(kafka, env, events, rate: float) -> tuple[threading.Thread, list[dict]]:
    """Produce ``events`` at ``rate`` in a thread (started); the list fills as they are sent."""
    sent: list[dict] = []
    thread = threading.Thread(target=lambda: sent.extend(
        _paced_produce(kafka, env, events, rate=rate)))
    thread.start()
    return thread, sent


def _assert_counted_once(worker: WorkerProcess, sent: list[dict], users: int = 40) -> None:
    """Each of ``users`` users, spread out, has as many clicks in its state as were sent."""
    clicks = Counter(e["user_id"] for e in sent)
    for user in list(clicks)[:: max(1, len(clicks) // users)]:
        status, state = http_get(f"{worker.url}/users/{user}/state")
        assert status == 200 and state["clicks"] == clicks[user], (user, status, state)


def _dead_letters(kafka, topic: str, expected: int) -> list[dict]:
    return [r.value for r in Subscriber(kafka.private, topic, from_beginning=True,
                                        max_records=expected + 50, idle_timeout_s=20)]


def test_bad_records_in_a_live_stream_go_to_the_dlq_once_and_stop_nothing(
        kafka, env, yc_events, tiny_model, tmp_path) -> None:
    worker = WorkerProcess(env, tmp_path / "w", tiny_model).start()
    stream, sent = _stream(kafka, env, yc_events, rate=300)
    try:
        time.sleep(2)
        bad = _send_bad(kafka, env["STREAMREC_EVENTS_TOPIC"])
        stream.join()
        # Valid events after the bad ones, on every partition (the stream must go on).
        after = [dict(e, event_id=f"after-{n}") for n, e in enumerate(yc_events[-200:])]
        with EventProducer(kafka.private, env["STREAMREC_EVENTS_TOPIC"]) as producer:
            sent += [producer.send(e).to_record() for e in after]
        last = _last_event_per_user(sent)
        latest = _await_recommendations(kafka, env["STREAMREC_RECOMMENDATIONS_TOPIC"],
                                        {u: e["event_id"] for u, e in last.items()}, 120)
        assert {u: r["cause_event_id"] for u, r in latest.items()} == {
            u: e["event_id"] for u, e in last.items()}
        letters = _dead_letters(kafka, env["STREAMREC_DLQ_TOPIC"], len(bad))
        by_origin = Counter((d["partition"], d["offset"]) for d in letters)
        assert set(by_origin) == set(bad), {bad.get(k, k) for k in set(bad) ^ set(by_origin)}
        assert set(by_origin.values()) == {1}, "a bad record dead-lettered more than once"
        for letter in letters:
            what = bad[(letter["partition"], letter["offset"])]
            assert letter["reason"] and letter["stage"] in ("decode", "validate"), what
            assert len(letter["value"] or b"") <= 256 * 1024, what
            if what in ("a value just over 1 MB", "a 600 KB key"):
                assert letter["truncated"], what
        assert worker.alive(), worker.log()
        assert worker.metric("streamrec_events_applied_total") == len(sent)
        _assert_counted_once(worker, sent)
        assert http_get(f"{worker.url}/users/poison-10/state")[0] == 404, "huge ids applied"
        assert http_get(worker.url + "/health")[0] == 200
        # Twenty dead letters in a few seconds: a few lines and a summary, not one each.
        full_log = (worker.data_dir / f"worker-{worker.port}.log").read_text()
        assert 1 <= full_log.count("dead-lettered") <= 4, full_log[-4000:]
    finally:
        stream.join()
        worker.stop()


def test_workers_joining_and_leaving_mid_stream_leave_every_user_exact(
        kafka, env, yc_events, tiny_model, tmp_path) -> None:
    """A second worker joins and leaves (SIGTERM, then kill -9) three times while events flow."""
    steady = WorkerProcess(env, tmp_path / "a", tiny_model).start()
    stream, sent = _stream(kafka, env, yc_events, rate=120)
    visitor = WorkerProcess(env, tmp_path / "b", tiny_model)
    visited = []
    try:
        for round_ in range(3):
            visitor.start()
            time.sleep(6)
            visited.append(visitor.metric("streamrec_events_in_total"))
            visitor.stop() if round_ % 2 == 0 else visitor.kill()
            time.sleep(3)
            assert steady.alive(), steady.log()
        assert any(visited), "the second worker never took a partition"
        stream.join()
        last = _last_event_per_user(sent)
        latest = _await_recommendations(kafka, env["STREAMREC_RECOMMENDATIONS_TOPIC"],
                                        {u: e["event_id"] for u, e in last.items()}, 180)
        assert {u: r["cause_event_id"] for u, r in latest.items()} == {
            u: e["event_id"] for u, e in last.items()}, "a stale latest recommendation"
        # The topic's latest per user is the last record written: re-read it whole to be sure
        # no older recommendation was written after the right one.
        newest: dict[str, dict] = {}
        for rec in Subscriber(kafka.private, env["STREAMREC_RECOMMENDATIONS_TOPIC"],
                              from_beginning=True, idle_timeout_s=10):
            newest[rec.value["user_id"]] = rec.value
        assert {u: r["cause_event_id"] for u, r in newest.items()} == {
            u: e["event_id"] for u, e in last.items()}
        _assert_counted_once(steady, sent)
        for user in list(last)[:: max(1, len(last) // 40)]:
            status, rec = http_get(f"{steady.url}/users/{user}/recommendations")
            assert status == 200 and rec["cause_event_id"] == last[user]["event_id"], (
                user, status, rec)
        assert steady.alive()
    finally:
        stream.join()
        visitor.kill()
        steady.stop()


def test_events_read_again_write_no_recommendation_older_than_the_latest(
        kafka, env, yc_events, tiny_model, tmp_path) -> None:
    """The group's offsets are moved back to the beginning (as a rebalance that re-reads a
    partition does): the worker reads every event again, changes no state, and writes no
    recommendation but for each user's last event."""
    from confluent_kafka import Consumer, TopicPartition

    worker = WorkerProcess(env, tmp_path / "w", tiny_model).start()
    with EventProducer(kafka.private, env["STREAMREC_EVENTS_TOPIC"]) as producer:
        sent = [producer.send(e).to_record() for e in yc_events]
    last = _last_event_per_user(sent)
    try:
        _await_recommendations(kafka, env["STREAMREC_RECOMMENDATIONS_TOPIC"],
                               {u: e["event_id"] for u, e in last.items()}, 120)
    finally:
        worker.stop()
    recs, events = env["STREAMREC_RECOMMENDATIONS_TOPIC"], env["STREAMREC_EVENTS_TOPIC"]
    group = Consumer(consumer_config(kafka.private, env["STREAMREC_APP_ID"]))
    try:
        ends = {p: group.get_watermark_offsets(TopicPartition(recs, p), timeout=10)[1]
                for p in range(4)}
        deadline = time.monotonic() + 60
        while True:  # the stopped (static) member leaves the group after its session
            try:
                group.commit(offsets=[TopicPartition(events, p, 0) for p in range(4)],
                             asynchronous=False)
                break
            except Exception:  # noqa: BLE001 - the group still has the member
                assert time.monotonic() < deadline, "could not move the group's offsets back"
                time.sleep(1)
    finally:
        group.close()
    again = WorkerProcess(env, tmp_path / "w", tiny_model, port=worker.port).start()
    try:
        deadline = time.monotonic() + 120
        while again.metric("streamrec_events_duplicate_total") < len(sent):
            assert time.monotonic() < deadline, again.log()
            time.sleep(0.5)
        assert again.metric("streamrec_events_applied_total") == 0
        time.sleep(2)  # the last batch's recommendations
        rewritten = []
        reader = Consumer(consumer_config(kafka.private, "check"))
        reader.assign([TopicPartition(recs, p, ends[p]) for p in range(4)])
        while (msg := reader.poll(5)) is not None:
            rewritten.append(CODEC.decode("recommendation", msg.value()))
        reader.close()
        older = [r for r in rewritten if r["cause_event_id"] != last[r["user_id"]]["event_id"]]
        assert not older, f"{len(older)} recommendations for older events, e.g. {older[0]}"
        assert len(rewritten) <= len(last)
    finally:
        again.stop()
