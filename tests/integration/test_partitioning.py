"""Events from a producer with librdkafka's default partitioner (CRC32, as kcat and the Go,
.NET and Node clients use unless told otherwise): forwarded to their user's partition, or
dead-lettered with the fix, by ``STREAMREC_MISROUTED``."""

from __future__ import annotations

from collections import Counter

import pytest
from confluent_kafka import Producer

from connectors.sdk.events import parse_event
from connectors.sdk.subscriber import Subscriber
from schemas import default_codec
from streamrec.harness import WorkerProcess, http_get
from streams.partitioning import KeyPartitions
from tests.integration.test_worker import (
    _await_recommendations,
    _last_event_per_user,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CODEC = default_codec()




def _produce_with_default_partitioner(bootstrap: str, topic: str, events: list[dict]
                                      ) -> tuple[list[dict], dict[str, int]]:
    """Produce keyed by user id, librdkafka's partitioner left as it is; returns the records
    and the partition each user's events landed on."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    landed: dict[str, int] = {}
    records = [parse_event(e).to_record() for e in events]

    def report(err, msg) -> None:
        assert err is None, err
        landed[msg.key().decode()] = msg.partition()

    for record in records:
        producer.produce(topic, CODEC.encode("user_event", record), record["user_id"].encode(),
                         on_delivery=report)
        producer.poll(0)
    assert producer.flush(30) == 0
    return records, landed


@pytest.mark.parametrize("mode", ["forward", "dead-letter"])
def test_events_of_a_default_partitioner_producer(
        kafka, env, yc_events, tiny_model, tmp_path, mode) -> None:
    env = dict(env, STREAMREC_MISROUTED=mode)
    worker = WorkerProcess(env, tmp_path / "w", tiny_model).start()
    try:
        sent, landed = _produce_with_default_partitioner(
            kafka.private, env["STREAMREC_EVENTS_TOPIC"], yc_events)
        parts = KeyPartitions(4)
        misrouted = {u for u, p in landed.items() if parts.of(u.encode()) != p}
        assert misrouted, "the default partitioner put every user where murmur2 does"
        counts = Counter(e["user_id"] for e in sent)
        if mode == "forward":
            expected = _last_event_per_user(sent)
        else:
            expected = _last_event_per_user([e for e in sent if e["user_id"] not in misrouted])
        latest = _await_recommendations(kafka, env["STREAMREC_RECOMMENDATIONS_TOPIC"],
                                        {u: e["event_id"] for u, e in expected.items()}, 120)
        assert {u: r["cause_event_id"] for u, r in latest.items()} == {
            u: e["event_id"] for u, e in expected.items()}
        for user in sorted(counts)[::10]:
            status, state = http_get(f"{worker.url}/users/{user}/state")
            if mode == "forward" or user not in misrouted:
                assert status == 200 and state["clicks"] == counts[user], (user, state)
            else:
                assert status == 404, (user, status, state)
        moved = sum(counts[u] for u in misrouted)
        actions = {labels["action"]: value
                   for labels, value in worker.samples("streamrec_events_misrouted_total")}
        assert actions == {mode: moved}
        assert worker.metric("streamrec_events_applied_total") == (
            len(sent) if mode == "forward" else len(sent) - moved)
        if mode == "dead-letter":
            letters = [r.value for r in Subscriber(kafka.private, env["STREAMREC_DLQ_TOPIC"],
                                                   from_beginning=True, max_records=moved,
                                                   idle_timeout_s=20)]
            assert len(letters) == moved
            assert all(d["reason"].startswith("misrouted") for d in letters)
    finally:
        worker.stop()
