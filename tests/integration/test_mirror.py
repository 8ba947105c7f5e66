"""The private-to-public mirror against the real clusters: exactly once, checked, resumable."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from connectors.kafka.clients import consumer_config, producer_config
from connectors.kafka.producer import RecordProducer
from connectors.mirror.transfer import Mirror, MirrorConfig, MirrorError
from connectors.privacy.anonymizer import Anonymizer
from schemas import default_codec

pytestmark = pytest.mark.integration
SECRET = b"mirror-test-secret"
CODEC = default_codec()


def anonymizer() -> Anonymizer:
    return Anonymizer(SECRET, 1, n_buckets=4096, time_bucket_ms=3_600_000, sample_rate=1.0)


def produce_samples(bootstrap: str, topic: str, n: int, start: int = 0) -> list[str]:
    """Anonymise ``n`` synthetic events into ``topic``; return their sample ids."""
    anon, ids = anonymizer(), []
    with RecordProducer(bootstrap) as producer:
        for i in range(start, start + n):
            event = {"event_id": f"ev-{topic}-{i}", "user_id": f"user-{i % 37}",
                     "type": "search" if i % 4 == 0 else "click", "item_id": f"item-{i % 500}",
                     "query": f"red shoes size {i % 50}", "timestamp": 1_700_000_000_000 + i}
            sample = anon.anonymize(event, seq=i)
            ids.append(sample.sample_id)
            # A header a careless worker might add: the mirror must not carry it across.
            producer.produce(topic, sample.pseudonym.encode(),
                             CODEC.write(sample),
                             headers=[("client-ip", b"203.0.113.5")])
    return ids


def read_all(bootstrap: str, topic: str, settled: bool = True) -> list[dict]:
    """Every committed, decoded record of ``topic``, all partitions (``_timestamp`` and
    ``_headers`` of the Kafka record are added to the sample's fields).

    ``settled``: read up to the high watermark, waiting for open transactions and for the commit
    markers the broker writes just after a commit returns; otherwise stop at the stable offset.
    """
    ends = high_watermarks(bootstrap, topic)
    consumer = Consumer(consumer_config(bootstrap, "mirror-test-reader",
                                        **{"enable.partition.eof": True}))
    try:
        tps = [TopicPartition(topic, p, 0) for p in ends]
        consumer.assign(tps)
        left, out = set(ends), []
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                record = CODEC.decode(CODEC.writer_of(msg.value()).name, msg.value())
                out.append({**record, "_timestamp": msg.timestamp()[1], "_headers": msg.headers()})
                continue
            if msg is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                if not settled:
                    left.discard(msg.partition())
            for tp in consumer.position(tps):
                if tp.offset >= ends[tp.partition]:
                    left.discard(tp.partition)
        assert not left, f"could not read {topic} to its end"
        return out
    finally:
        consumer.close()


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> records written to ``topic`` so far (committed or not); {} if no topic."""
    consumer = Consumer(consumer_config(bootstrap, "mirror-test-watermarks"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
    except KafkaException:  # the topic does not exist yet
        return {}
    finally:
        consumer.close()


def config(kafka, source: str, target: str, **kw) -> MirrorConfig:
    return MirrorConfig(kafka.private, kafka.public, source, target, allowlist=(source,),
                        progress_topic=f"_progress-{source}", once=True, **kw)


def test_copies_each_sample_once_and_resumes_where_it_stopped(kafka, topic_factory, unique):
    source, target = topic_factory("samples"), unique("train")
    first = produce_samples(kafka.private, source, 1500)
    stats = Mirror(config(kafka, source, target, batch_size=200), anonymizer()).run()
    assert (stats.copied, stats.rejected) == (1500, 0) and stats.transactions >= 8
    second = produce_samples(kafka.private, source, 700, start=1500)
    assert Mirror(config(kafka, source, target), anonymizer()).run().copied == 700
    got = read_all(kafka.public, target)
    assert Counter(s["sample_id"] for s in got) == Counter(first + second)
    # Public records carry no headers and no exact time: Kafka timestamps are time buckets.
    assert all(s["_headers"] is None and s["_timestamp"] % 3_600_000 == 0 for s in got)
    # A user's samples stay in order: same key, same partition, seq rising.
    by_user: dict[str, list[int]] = {}
    for s in got:
        by_user.setdefault(s["pseudonym"], []).append(s["seq"])
    assert all(seqs == sorted(seqs) for seqs in by_user.values())


def test_records_that_fail_the_privacy_check_go_to_the_private_dlq(kafka, topic_factory, unique):
    source, target = topic_factory("samples"), unique("train")
    good = produce_samples(kafka.private, source, 20)
    sample = anonymizer().anonymize({"event_id": "x", "user_id": "alice", "type": "click",
                                     "item_id": "i1", "timestamp": 1_700_000_000_000}, 0)
    event = {"event_id": "e", "user_id": "alice", "type": "search", "query": "alice@example.org",
             "timestamp": 1_700_000_000_000, "context": {"ip": "203.0.113.7"}}
    bad = {
        b"raw-event": CODEC.encode("user_event", event),
        b"unkeyed": CODEC.write(dataclasses.replace(
            sample, pseudonym=hashlib.sha256(b"alice").hexdigest())),
        b"buckets": CODEC.write(dataclasses.replace(sample, query_buckets=[5000])),
        b"alice": CODEC.write(sample),  # keyed by the raw user id
        b"garbage": b"alice@example.org",
    }
    with RecordProducer(kafka.private) as producer:
        for key, value in bad.items():
            producer.produce(source, key, value)
    stats = Mirror(config(kafka, source, target), anonymizer()).run()
    assert (stats.copied, stats.rejected) == (20, 5)
    assert sorted(s["sample_id"] for s in read_all(kafka.public, target)) == sorted(good)
    letters = {d["key"]: d for d in read_all(kafka.private, f"{source}.dlq")}
    assert set(letters) == set(bad)
    assert "not a TrainingSample" in letters[b"raw-event"]["reason"]
    assert "not a keyed hash" in letters[b"unkeyed"]["reason"]
    assert "query_buckets outside" in letters[b"buckets"]["reason"]
    assert "key is not the sample's pseudonym" in letters[b"alice"]["reason"]
    assert letters[b"garbage"]["value"] == b"alice@example.org"  # kept whole, privately


def test_aborted_worker_transactions_do_not_cross(kafka, topic_factory, unique) -> None:
    source, target = topic_factory("samples"), unique("train")
    anon, kept = anonymizer(), []
    worker = Producer(producer_config(kafka.private, **{"transactional.id": unique("worker")}))
    worker.init_transactions(30)
    for n, commit in ((50, True), (20, False), (30, True)):
        worker.begin_transaction()
        for i in range(n):
            sample = anon.anonymize({"event_id": uuid.uuid4().hex, "user_id": f"u{i}",
                                     "type": "click", "item_id": "i", "timestamp": 0}, i)
            worker.produce(source, CODEC.write(sample),
                           sample.pseudonym.encode())
            kept += [sample.sample_id] if commit else []
        worker.flush(30)  # the aborted records reach the broker, as a crashed worker's would
        (worker.commit_transaction if commit else worker.abort_transaction)(30)
    # ``once`` ends although every partition ends in a commit marker, not a record.
    stats = Mirror(config(kafka, source, target), anonymizer()).run()
    assert stats.copied == 80
    assert sorted(s["sample_id"] for s in read_all(kafka.public, target)) == sorted(kept)


def test_idle_exit_ends_a_quiet_mirror(kafka, topic_factory, unique) -> None:
    source, target = topic_factory("samples"), unique("train")
    produce_samples(kafka.private, source, 10)
    quiet = MirrorConfig(kafka.private, kafka.public, source, target, allowlist=(source,),
                         progress_topic=f"_progress-{source}", idle_exit_s=1.0)
    started = time.monotonic()
    assert Mirror(quiet, anonymizer()).run().copied == 10
    assert time.monotonic() - started < 20


def test_topics_off_the_allowlist_are_refused(kafka, cli, unique) -> None:
    with pytest.raises(MirrorError, match="not on the mirror allow-list"):
        Mirror(MirrorConfig("x", "y", "events", "t", allowlist=("samples.anon",)), anonymizer())
    run = subprocess.run([*cli, "mirror", "--once", "--source", unique("events")],
                         env=kafka.env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "not on the mirror allow-list" in run.stderr


def test_unreachable_public_cluster_is_retried_and_nothing_is_lost(kafka, topic_factory, unique):
    source, target = topic_factory("samples"), unique("train")
    ids = produce_samples(kafka.private, source, 300)
    down = MirrorConfig(kafka.private, "127.0.0.1:1", source, target, allowlist=(source,),
                        timeout_s=1.0, backoff_s=(0.1, 0.4))
    mirror = Mirror(down, anonymizer())
    thread = threading.Thread(target=mirror.run)
    thread.start()
    deadline = time.monotonic() + 30
    while mirror.stats.retries < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    mirror.stop()
    thread.join(10)
    assert not thread.is_alive(), "stop() must end the retry loop promptly"
    assert mirror.stats.retries >= 3 and mirror.stats.paused and mirror.stats.copied == 0
    # The public cluster is back: everything crosses, once.
    assert Mirror(config(kafka, source, target), anonymizer()).run().copied == 300
    assert Counter(s["sample_id"] for s in read_all(kafka.public, target)) == Counter(ids)


@pytest.mark.slow
def test_kill_9_mid_way_then_restart_leaves_each_sample_exactly_once(kafka, cli, topic_factory,
                                                                     unique, tmp_path) -> None:
    source, target = topic_factory("samples"), unique("train")
    ids = produce_samples(kafka.private, source, 4000)
    env = kafka.env(STREAMREC_PSEUDONYM_SECRET=SECRET.decode(),
                    STREAMREC_MIRROR_ALLOWLIST=f'["{source}"]')
    args = [*cli, "mirror", "--source", source, "--target", target,
            "--progress-topic", f"_progress-{source}"]
    with open(tmp_path / "first.log", "w") as log:
        slow = subprocess.Popen([*args, "--batch-size", "40", "--max-rate", "400"], env=env,
                                stdout=subprocess.DEVNULL, stderr=log)
        try:
            while sum(high_watermarks(kafka.public, target).values()) < 1000:
                assert slow.poll() is None, (tmp_path / "first.log").read_text()
                time.sleep(0.05)
        finally:
            os.kill(slow.pid, signal.SIGKILL)
            slow.wait()
    before = len(read_all(kafka.public, target, settled=False))  # the dead mirror's txn is open
    assert 0 < before < 4000, "the kill must land mid-way"
    rerun = subprocess.run([*args, "--once"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    # It resumes: it copies only what was not committed (a commit in flight at the kill may
    # still complete, so at most 4000 - before).
    copied = int(re.search(r"mirrored (\d+) sample", rerun.stdout).group(1))
    assert 0 < copied <= 4000 - before
    counts = Counter(s["sample_id"] for s in read_all(kafka.public, target))
    assert counts == Counter(ids) and max(counts.values()) == 1
