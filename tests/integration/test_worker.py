"""The streaming core end to end: real brokers, real worker processes, real data, a real model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.kafka.clients import consumer_config
from connectors.kafka.producer import RecordProducer
from connectors.kafka.topics import TopicSpec, ensure_topics
from connectors.sdk.events import parse_event
from connectors.sdk.producer import EventProducer
from connectors.sdk.subscriber import Subscriber
from streamrec.harness import WorkerProcess, http_get
from streams.metrics import STAGES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def env(kafka, unique) -> dict[str, str]:
    """Settings for a private pipeline: fresh topics and consumer group."""
    return kafka.env(
        STREAMREC_EVENTS_TOPIC=unique("events"), STREAMREC_RECOMMENDATIONS_TOPIC=unique("recs"),
        STREAMREC_DLQ_TOPIC=unique("dlq"), STREAMREC_APP_ID=unique("app"),
        STREAMREC_BATCH_MAX_MS="10", STREAMREC_TOP_K="10")


def _produce(kafka, env, events) -> list[dict]:
    with EventProducer(kafka.private, env["STREAMREC_EVENTS_TOPIC"]) as producer:
        return [producer.send(e).to_record() for e in events]


def _last_event_per_user(events) -> dict[str, dict]:
    return {e["user_id"]: e for e in events}


def _await_recommendations(kafka, topic: str, expected: dict[str, str], timeout_s: float
                           ) -> dict[str, dict]:
    """Read recommendations until each user's newest one is caused by its expected event."""
    latest: dict[str, dict] = {}
    done = 0
    sub = Subscriber(kafka.private, topic, from_beginning=True, idle_timeout_s=timeout_s)
    deadline = time.monotonic() + timeout_s
    for rec in sub:
        user = rec.value["user_id"]
        was_done = latest.get(user, {}).get("cause_event_id") == expected.get(user)
        latest[user] = rec.value
        done += (rec.value["cause_event_id"] == expected.get(user)) - was_done
        if done == len(expected) or time.monotonic() > deadline:
            sub.close()
            break
    return latest


def _events_lag(worker: WorkerProcess, topic: str, timeout_s: float = 20.0) -> dict[int, float]:
    """The lag gauge of each events partition, once it is reported and has reached 0."""
    deadline = time.monotonic() + timeout_s
    while True:
        lag = {int(labels["partition"].rsplit(":", 1)[1]): value
               for labels, value in worker.samples("streamrec_consumer_lag")
               if labels["partition"].rsplit(":", 1)[0] == topic}
        if (lag and not any(lag.values())) or time.monotonic() > deadline:
            return lag
        time.sleep(1)


@pytest.mark.parametrize("reader", ["librdkafka", "faust"])
def test_every_user_gets_a_model_recommendation_for_its_last_event(kafka, env, yc_events,
                                                                   tiny_model, tmp_path,
                                                                   reader) -> None:
    # librdkafka: the events reader (default); faust: Faust's own client fetches the events.
    env = dict(env, STREAMREC_EVENTS_READER=reader)
    worker = WorkerProcess(env, tmp_path / "w1", tiny_model).start()
    try:
        sent = _produce(kafka, env, yc_events)
        last = _last_event_per_user(sent)
        latest = _await_recommendations(kafka, env["STREAMREC_RECOMMENDATIONS_TOPIC"],
                                        {u: e["event_id"] for u, e in last.items()}, 120)
        assert {u for u, r in latest.items() if r["cause_event_id"] == last[u]["event_id"]} \
            == set(last)
        history = defaultdict(list)
        for e in sent:
            history[e["user_id"]].append(e["item_id"])
        for user, rec in latest.items():
            items = [i["item_id"] for i in rec["items"]]
            assert len(items) == 10 and len(set(items)) == 10
            assert not set(items) & set(history[user][-20:]), "recently seen items recommended"
        strategies = Counter(r["strategy"] for r in latest.values())
        assert strategies["model"] == len(latest)  # every user clicked items the model knows
        version = http_get(worker.url + "/model")[1]["version"]
        assert {r["model_version"] for r in latest.values()} == {version}
        status, body = http_get(f"{worker.url}/users/{sent[-1]['user_id']}/recommendations")
        assert status == 200 and body["cause_event_id"] == sent[-1]["event_id"]
        assert worker.metric("streamrec_events_applied_total") == len(sent)
        assert _events_lag(worker, env["STREAMREC_EVENTS_TOPIC"]) == {
            p: 0.0 for p in range(int(env.get("STREAMREC_PARTITIONS", "4")))}
        # Every batch went through every stage once (all its events were valid and scored);
        # the last one may still be settling when its recommendations are already readable.
        batches = worker.metric("streamrec_batch_size_count")
        deadline = time.monotonic() + 15
        while (stages := _stage_counts(worker)) != dict.fromkeys(STAGES, batches):
            assert time.monotonic() < deadline, (batches, stages)
            time.sleep(0.2)
        assert batches > 0
    finally:
        worker.stop()


def _stage_counts(worker: WorkerProcess) -> dict[str, float]:
    return {labels["stage"]: value
            for labels, value in worker.samples("streamrec_batch_stage_seconds_count")}


def test_poison_records_go_to_the_dlq_and_the_worker_keeps_going(kafka, env, tmp_path) -> None:
    worker = WorkerProcess(env, tmp_path / "w1").start()  # no model: popularity fallback
    try:
        with RecordProducer(kafka.private) as raw:
            raw.produce(env["STREAMREC_EVENTS_TOPIC"], b"u-bad", b"\x00not avro at all")
            raw.produce(env["STREAMREC_EVENTS_TOPIC"], b"u-bad", b"")
        good = [parse_event({"type": "click", "user_id": f"u{i % 4}", "item_id": f"i{i}"})
                for i in range(20)]
        sent = _produce(kafka, env, good)
        last = _last_event_per_user(sent)
        latest = _await_recommendations(kafka, env["STREAMREC_RECOMMENDATIONS_TOPIC"],
                                        {u: e["event_id"] for u, e in last.items()}, 60)
        assert {u: r["cause_event_id"] for u, r in latest.items()} == {
            u: e["event_id"] for u, e in last.items()}
        assert {r["strategy"] for r in latest.values()} == {"popularity"}
        letters = list(Subscriber(kafka.private, env["STREAMREC_DLQ_TOPIC"], from_beginning=True,
                                  max_records=2, idle_timeout_s=30))
        assert [(d.value["stage"], d.value["key"]) for d in letters] == [
            ("decode", b"u-bad"), ("decode", b"u-bad")]
        assert letters[0].value["value"] == b"\x00not avro at all"
        assert letters[0].value["topic"] == env["STREAMREC_EVENTS_TOPIC"]
        assert letters[0].value["offset"] >= 0 and "not Avro" in letters[0].value["reason"]
        assert worker.alive()
        assert worker.metric("streamrec_events_dead_lettered_total") == 2
    finally:
        worker.stop()


def _paced_produce(kafka, env, events, rate: float) -> list[dict]:
    """Produce at about ``rate`` events/s, as live traffic would arrive."""
    sent = []
    with EventProducer(kafka.private, env["STREAMREC_EVENTS_TOPIC"]) as producer:
        start = time.monotonic()
        for n, event in enumerate(events):
            sent.append(producer.send(event).to_record())
            ahead = n / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    return sent


@pytest.mark.parametrize("disk", ["same", "fresh"])
def test_kill_9_mid_stream_loses_nothing_and_counts_nothing_twice(kafka, env, yc_events,
                                                                  tiny_model, tmp_path,
                                                                  disk) -> None:
    """Restart on the same disk (local RocksDB plus the changelog's tail) or on a fresh one
    (the tables restored from their changelogs alone)."""
    import threading

    worker = WorkerProcess(env, tmp_path / "w", tiny_model).start()
    sent: list[dict] = []
    producer = threading.Thread(target=lambda: sent.extend(
        _paced_produce(kafka, env, yc_events, rate=150)))
    producer.start()
    try:
        deadline = time.monotonic() + 60
        while worker.metric("streamrec_events_applied_total") < len(yc_events) // 3:
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.2)
        worker.kill()  # mid-stream: offsets, changelog and output partly written
        restarted = WorkerProcess(env, tmp_path / ("w" if disk == "same" else "fresh"),
                                  tiny_model, port=worker.port).start()
        producer.join()
        last = _last_event_per_user(sent)
        # The restart takes the killed member's place (static membership), then (fresh disk)
        # restores the tables from their changelogs: allow for that on a loaded machine.
        latest = _await_recommendations(kafka, env["STREAMREC_RECOMMENDATIONS_TOPIC"],
                                        {u: e["event_id"] for u, e in last.items()}, 300)
        assert {u: r["cause_event_id"] for u, r in latest.items()} == {
            u: e["event_id"] for u, e in last.items()}
        clicks = Counter(e["user_id"] for e in sent)
        for user in list(clicks)[:: max(1, len(clicks) // 60)]:  # 60 users, spread out
            status, state = http_get(f"{restarted.url}/users/{user}/state")
            assert status == 200
            assert state["clicks"] == clicks[user], f"{user}: lost or double-counted events"
            assert state["last_event_id"] == last[user]["event_id"]
    finally:
        producer.join()
        worker.kill()
        if "restarted" in locals():
            restarted.stop()


def test_two_workers_share_partitions_and_both_answer_for_any_user(kafka, env, yc_events,
                                                                   tiny_model, tmp_path) -> None:
    first = WorkerProcess(env, tmp_path / "a", tiny_model).start()
    second = WorkerProcess(env, tmp_path / "b", tiny_model).start()
    try:
        time.sleep(5)  # let the group settle on two members before data arrives
        sent = _produce(kafka, env, yc_events)
        last = _last_event_per_user(sent)
        latest = _await_recommendations(kafka, env["STREAMREC_RECOMMENDATIONS_TOPIC"],
                                        {u: e["event_id"] for u, e in last.items()}, 120)
        assert len(latest) == len(last)
        assert first.metric("streamrec_events_in_total") > 0
        assert second.metric("streamrec_events_in_total") > 0
        assert (first.metric("streamrec_events_applied_total")
                + second.metric("streamrec_events_applied_total")) == len(sent)
        for user in list(last)[:30]:
            answers = [http_get(f"{w.url}/users/{user}/recommendations") for w in (first, second)]
            assert [status for status, _ in answers] == [200, 200], answers
            assert {body["cause_event_id"] for _, body in answers} == {last[user]["event_id"]}
    finally:
        first.stop()
        second.stop()


def test_hot_swap_mid_stream_fails_no_event(kafka, env, yc_events, tiny_model, tmp_path) -> None:
    other = tmp_path / "model-b"
    subprocess.run([sys.executable, "-m", "streamrec", "train", "--dataset",
                    str(_events_file(yc_events, tmp_path)), "--format", "events", "--out",
                    str(other), "--dim", "16", "--layers", "1", "--heads", "1", "--epochs", "1",
                    "--max-len", "20", "--seed", "9"], check=True, capture_output=True,
                   timeout=600)
    worker = WorkerProcess(env, tmp_path / "w", tiny_model).start()
    try:
        old_version = http_get(worker.url + "/model")[1]["version"]
        half = len(yc_events) // 2
        _produce(kafka, env, yc_events[:half])
        request = urllib_post(worker.url + "/model", {"path": str(other)})
        new_version = request["version"]
        assert new_version != old_version
        sent = _produce(kafka, env, yc_events[half:])
        last = _last_event_per_user(sent)
        latest = _await_recommendations(kafka, env["STREAMREC_RECOMMENDATIONS_TOPIC"],
                                        {u: e["event_id"] for u, e in last.items()}, 120)
        assert {latest[u]["model_version"] for u in last} == {new_version}
        assert worker.metric("streamrec_events_dead_lettered_total") == 0
        assert worker.metric("streamrec_model_swaps_total") == 1
        bad = urllib_post(worker.url + "/model", {"path": str(tmp_path / "missing")}, ok=False)
        assert "error" in bad and http_get(worker.url + "/model")[1]["version"] == new_version
    finally:
        worker.stop()


def _events_file(events, tmp_path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def urllib_post(url: str, body: dict, ok: bool = True) -> dict:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        if ok:
            raise
        return json.loads(err.read())


def test_refused_output_ends_the_worker_and_commits_nothing(kafka, env, yc_events, tiny_model,
                                                             tmp_path) -> None:
    """A batch whose records cannot be stored is not acknowledged, and the worker exits non-zero
    with the reason in its log (so a supervisor restarts it and the batch is read again)."""
    recs = env["STREAMREC_RECOMMENDATIONS_TOPIC"]
    ensure_topics(kafka.private, [TopicSpec(recs, 4, {"max.message.bytes": "100",
                                                      "cleanup.policy": "compact"})])
    worker = WorkerProcess(env, tmp_path / "w", tiny_model).start()
    try:
        _produce(kafka, env, yc_events[:30])
        deadline = time.monotonic() + 90
        while worker.proc.poll() is None:
            assert time.monotonic() < deadline, "the worker kept running after its output failed"
            time.sleep(0.2)
        assert worker.proc.returncode != 0
        assert "DeliveryError" in worker.log() and "Message size too large" in worker.log()
    finally:
        worker.stop()
    group = Consumer(consumer_config(kafka.private, env["STREAMREC_APP_ID"]))
    try:
        committed = group.committed(
            [TopicPartition(env["STREAMREC_EVENTS_TOPIC"], p) for p in range(4)], timeout=10)
    finally:
        group.close()
    assert [tp.offset for tp in committed] == [-1001] * 4  # no offset was ever committed
