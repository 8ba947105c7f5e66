"""Produce and subscribe against the real private cluster, through the SDKs and the CLI."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.kafka.clients import consumer_config
from connectors.kafka.producer import DeliveryError
from connectors.kafka.topics import TopicError, TopicSpec, ensure_topics
from connectors.sdk.events import Event
from connectors.sdk.producer import EventProducer
from connectors.sdk.subscriber import Subscriber

pytestmark = pytest.mark.integration


def _count(bootstrap: str, topic: str, partitions: int = 4) -> int:
    consumer = Consumer(consumer_config(bootstrap, "count"))
    try:
        total = 0
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def test_sdk_round_trip_keeps_each_users_order(kafka, topic_factory) -> None:
    topic = topic_factory("events")
    sent = []
    with EventProducer(kafka.private, topic) as producer:
        for i in range(300):
            user = f"user-{i % 7}"
            event = (Event.click(user, f"item-{i}", timestamp=1_700_000_000_000 + i) if i % 5
                     else Event.search(user, f"query {i}", timestamp=1_700_000_000_000 + i))
            sent.append(producer.send(event))
    assert producer.delivered == 300 and producer.failed == 0
    got = [Event.from_record(r.value)
           for r in Subscriber(kafka.private, topic, from_beginning=True, max_records=300,
                               idle_timeout_s=15)]
    assert sorted(got, key=lambda e: e.event_id) == sorted(sent, key=lambda e: e.event_id)
    by_user_sent, by_user_got = defaultdict(list), defaultdict(list)
    for e in sent:
        by_user_sent[e.user_id].append(e.event_id)
    for e in got:
        by_user_got[e.user_id].append(e.event_id)
    assert by_user_got == by_user_sent


def test_subscriber_filters_by_user_and_stops_at_max(kafka, topic_factory) -> None:
    topic = topic_factory("events")
    with EventProducer(kafka.private, topic) as producer:
        for i in range(50):
            producer.send(Event.click(f"u{i % 5}", f"i{i}"))
    got = list(Subscriber(kafka.private, topic, user_id="u3", from_beginning=True,
                          max_records=4, idle_timeout_s=15))
    assert len(got) == 4
    assert {r.key for r in got} == {b"u3"}
    assert [r.value["item_id"] for r in got] == ["i3", "i8", "i13", "i18"]


def test_look_up_waits_for_the_producer_id_before_the_first_record(kafka, topic_factory) -> None:
    topic = topic_factory("events")
    for _ in range(3):  # a fresh producer each time: the id is asked for at creation
        with EventProducer(kafka.private, topic) as producer:
            producer.look_up(topic)
            assert producer._id.assigned.is_set()
            producer.send(Event.click("u1", "i1"))
        assert producer.delivered == 1


def test_unreachable_cluster_surfaces_delivery_errors() -> None:
    producer = EventProducer("127.0.0.1:1", "events", **{"message.timeout.ms": 1500})
    producer.send(Event.click("u", "i"))
    with pytest.raises(DeliveryError, match="failed"):
        producer.flush(timeout_s=10)


def test_partition_mismatch_is_refused_with_the_fix(kafka, unique) -> None:
    name = unique("mismatch")
    ensure_topics(kafka.private, [TopicSpec(name, 2)])
    with pytest.raises(TopicError, match="has 2 partitions.*STREAMREC_PARTITIONS=2"):
        ensure_topics(kafka.private, [TopicSpec(name, 4)])


BAD_FILE = [
    '{"type": "click", "user_id": "a", "item_id": "1", "timestamp": 1700000000000}',
    '{"type": "click", "user_id": "a", "item_id": "2"',  # malformed JSON
    '{"type": "click", "item_id": "3"}',  # missing user_id
    '{"type": "search", "user_id": "b", "query": 42}',  # wrong type
    "",
    '{"type": "search", "user_id": "b", "query": "lipstick", "timestamp": "2024-05-01T12:00:00"}',
    '{"type": "view", "user_id": "c", "item_id": "9"}',  # unknown type
]


def _write(tmp_path, lines) -> str:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_bad_lines_are_all_reported_and_nothing_is_produced(kafka, topic_factory, tmp_path,
                                                              cli) -> None:
    topic = topic_factory("events")
    path = _write(tmp_path, BAD_FILE)
    result = subprocess.run([*cli, "produce", path, "--topic", topic], env=kafka.env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    for line_no, reason in [(2, "malformed JSON"), (3, "'user_id' is required"),
                            (4, "'query' must be a string"), (7, "'type' must be")]:
        assert f"{path}:{line_no}: {reason}" in result.stderr
    assert "nothing was produced" in result.stderr and "--dlq" in result.stderr
    assert _count(kafka.private, topic) == 0


def test_dlq_option_produces_good_lines_and_dead_letters_bad_ones(kafka, topic_factory, unique,
                                                                  tmp_path, cli) -> None:
    topic, dlq = topic_factory("events"), topic_factory("dlq", partitions=1)
    path = _write(tmp_path, BAD_FILE)
    result = subprocess.run([*cli, "produce", path, "--topic", topic, "--dlq"],
                            env=kafka.env(STREAMREC_DLQ_TOPIC=dlq),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "dead-lettered: 4" in result.stderr
    good = list(Subscriber(kafka.private, topic, from_beginning=True, max_records=2,
                           idle_timeout_s=15))
    assert sorted(r.value["user_id"] for r in good) == ["a", "b"]
    letters = list(Subscriber(kafka.private, dlq, from_beginning=True, max_records=4,
                              idle_timeout_s=15))
    assert sorted(r.value["reason"].split(":")[0] for r in letters) == [
        "line 2", "line 3", "line 4", "line 7"]
    assert {r.value["stage"] for r in letters} == {"input"}
    assert letters[0].value["value"] == BAD_FILE[int(letters[0].value["reason"][5]) - 1].encode()


@pytest.mark.slow
def test_yoochoose_round_trip_through_the_cli(kafka, topic_factory, datasets, tmp_path,
                                              cli) -> None:
    topic = topic_factory("events")
    events_path = tmp_path / "yoochoose.jsonl"
    convert = subprocess.run(
        [*cli, "dataset", "convert", "--format", "yoochoose",
         str(datasets / "yoochoose-rsc15-100k" / "yoochoose-clicks-100k_train_full.txt"),
         "--out", str(events_path)], capture_output=True, text=True, timeout=300)
    assert convert.returncode == 0, convert.stderr
    produce = subprocess.run([*cli, "produce", str(events_path), "--topic", topic, "--quiet"],
                             env=kafka.env(), capture_output=True, text=True, timeout=300)
    assert produce.returncode == 0, produce.stderr
    subscribe = subprocess.run(
        [*cli, "subscribe", "--topic", topic, "--from-beginning", "--timeout", "10"],
        env=kafka.env(), capture_output=True, text=True, timeout=300)
    assert subscribe.returncode == 0, subscribe.stderr
    sent = [json.loads(line) for line in events_path.read_text().splitlines()]
    got = [json.loads(line) for line in subscribe.stdout.splitlines()]
    assert len(sent) == 70_278 and len(got) == len(sent)
    for record in got:
        for meta in ("_topic", "_partition", "_offset"):
            record.pop(meta)
    # Every field of every event comes back equal (fields the client left out are null/empty).
    normalised = [{"query": None, "session_id": None, "item_id": None, "context": {}} | e
                  for e in sent]
    key = lambda e: e["event_id"]  # noqa: E731
    assert sorted(got, key=key) == sorted(normalised, key=key)
    per_user_sent, per_user_got = defaultdict(list), defaultdict(list)
    for e in sent:
        per_user_sent[e["user_id"]].append(e["event_id"])
    for e in got:
        per_user_got[e["user_id"]].append(e["event_id"])
    assert per_user_got == per_user_sent
