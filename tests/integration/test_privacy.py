"""The privacy boundary end to end: canaries go in privately; the audit finds none of them publicly.

And the same audit fails when the anonymizer is bypassed, so a passing audit means something.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from connectors.kafka.clients import consumer_config
from connectors.kafka.producer import RecordProducer
from connectors.privacy.anonymizer import Anonymizer
from connectors.sdk.events import Event
from connectors.sdk.producer import EventProducer
from connectors.sdk.subscriber import Subscriber
from schemas import default_codec

pytestmark = pytest.mark.integration
SECRET = "privacy-test-secret"
N_USERS, N_EVENTS = 12, 240


def canary_events(tag: str) -> tuple[list[Event], dict[str, list[str]]]:
    """Events full of planted personal data, and the canaries by kind."""
    canaries: dict[str, list[str]] = defaultdict(list)
    events = []
    for u in range(N_USERS):
        user = f"canary-user-{tag}-{u}"
        mail = f"jane.{tag}{u}@example.org"
        phone = f"+49 171 55{u:02d}{tag[:3].translate(str.maketrans('abcdef', '123456'))}"
        ip, agent = f"203.0.113.{u + 10}", f"Mozilla/5.0 (CanaryOS {tag}-{u})"
        for kind, value in (("user", user), ("email", mail), ("phone", phone), ("ip", ip),
                            ("agent", agent)):
            canaries[kind].append(value)
        for i in range(N_EVENTS // N_USERS):
            context = {"ip": ip, "user_agent": agent}
            events.append(
                Event.search(user, f"gift for {mail} call {phone}", context=context,
                             timestamp=1_700_000_000_000 + i * 60_000) if i % 3 == 0 else
                Event.click(user, f"item-{i}", context=context,
                            timestamp=1_700_000_000_000 + i * 60_000))
    return events, canaries


def anonymize_topic(kafka, events_topic: str, samples_topic: str) -> int:
    """What the worker does: each event, in order, through the anonymizer to the samples topic."""
    anonymizer = Anonymizer(SECRET.encode(), 1, n_buckets=4096, time_bucket_ms=3_600_000,
                            sample_rate=1.0)
    codec, seq, produced = default_codec(), defaultdict(int), 0
    with RecordProducer(kafka.private) as producer:
        for received in Subscriber(kafka.private, events_topic, from_beginning=True,
                                   max_records=N_EVENTS, idle_timeout_s=20):
            sample = anonymizer.anonymize(received.value, seq[received.value["user_id"]])
            seq[received.value["user_id"]] += 1
            producer.produce(samples_topic, sample.pseudonym.encode(),
                             codec.write(sample))
            produced += 1
    return produced


def copy_raw(kafka, events_topic: str, public_topic: str) -> int:
    """The test-only bypass: raw event records straight to the public cluster."""
    consumer = Consumer(consumer_config(kafka.private, f"bypass-{uuid.uuid4()}",
                                        **{"enable.partition.eof": True,
                                           "auto.offset.reset": "earliest"}))
    consumer.assign([TopicPartition(events_topic, p, 0) for p in range(4)])
    copied, ended = 0, set()
    with RecordProducer(kafka.public) as producer:
        while len(ended) < 4:
            msg = consumer.poll(10)
            assert msg is not None, "the events topic stopped short"
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF
                ended.add(msg.partition())
                continue
            producer.produce(public_topic, msg.key(), msg.value(), headers=msg.headers())
            copied += 1
    consumer.close()
    return copied


def audit(cli, kafka, topic: str, canaries: Path, artifacts: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*cli, "audit", "public", "--canaries", str(canaries), "--topics",
                           topic, "--artifacts", str(artifacts), "--max-findings", "100000"],
                          env=kafka.env(), capture_output=True, text=True, timeout=120)


def test_no_canary_crosses_and_the_audit_catches_a_bypass(kafka, cli, topic_factory, unique,
                                                          tmp_path) -> None:
    tag = uuid.uuid4().hex[:8]
    events, canaries = canary_events(tag)
    planted = [v for values in canaries.values() for v in values]
    (tmp_path / "canaries.txt").write_text("# planted\n" + "\n".join(planted) + "\n")
    artifacts = tmp_path / "models"
    (artifacts / "v1").mkdir(parents=True)
    (artifacts / "v1" / "metadata.json").write_text(json.dumps({"version": "v1", "hr@10": 0.2}))

    events_topic, samples_topic = topic_factory("events"), topic_factory("samples")
    with EventProducer(kafka.private, events_topic) as producer:
        for event in events:
            producer.send(event)
    assert anonymize_topic(kafka, events_topic, samples_topic) == N_EVENTS

    public_topic = unique("train")
    mirror = subprocess.run(
        [*cli, "mirror", "--once", "--source", samples_topic, "--target", public_topic,
         "--progress-topic", f"_progress-{samples_topic}"], capture_output=True, text=True,
        env=kafka.env(STREAMREC_PSEUDONYM_SECRET=SECRET,
                      STREAMREC_MIRROR_ALLOWLIST=json.dumps([samples_topic])), timeout=120)
    assert mirror.returncode == 0, mirror.stderr
    assert f"mirrored {N_EVENTS} sample(s)" in mirror.stdout

    clean = audit(cli, kafka, public_topic, tmp_path / "canaries.txt", artifacts)
    assert clean.returncode == 0, clean.stdout
    assert f"{len(planted)} canary value(s)" in clean.stdout
    assert f"1 topic(s), 4 partition(s), {N_EVENTS} record(s)" in clean.stdout
    assert "1 artifact metadata file(s): 0 finding(s)" in clean.stdout

    raw_topic = unique("raw-events")
    assert copy_raw(kafka, events_topic, raw_topic) == N_EVENTS
    (artifacts / "v2").mkdir()
    (artifacts / "v2" / "metadata.json").write_text(json.dumps({"trained_on": planted[0]}))
    caught = audit(cli, kafka, raw_topic, tmp_path / "canaries.txt", artifacts)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    found = set(re.findall(r"canary #(\d+)", caught.stdout))
    assert found == {str(i) for i in range(1, len(planted) + 1)}, "every canary must be found"
    for kind in ("email", "phone", "ipv4", "user agent"):
        assert f"FOUND {kind} at {raw_topic}/" in caught.stdout
    assert "v2/metadata.json:$.trained_on" in caught.stdout
    assert not any(value in caught.stdout + caught.stderr for value in planted), "unredacted"
