"""Replay against the real private cluster: exact copies, kill -9 and resume, refusals."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from connectors.kafka.clients import consumer_config, producer_config
from connectors.kafka.producer import RecordProducer
from connectors.replay.history import (
    ORIGIN_OFFSET,
    ORIGIN_PARTITION,
    ORIGIN_TIMESTAMP,
    ORIGIN_TOPIC,
    OutRecord,
    RangeReader,
    TargetWriter,
    copy_range,
    resolve_offset_range,
)
from connectors.replay.ranges import partition_count
from connectors.replay.spec import format_ms
from schemas import default_codec

pytestmark = pytest.mark.integration
T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z


@dataclass(frozen=True)
class Rec:
    """One record as read back: where it is, and what it holds."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def origin(self) -> tuple[str, int, int, int]:
        """The origin headers a replay appended (the last four headers)."""
        h = dict(self.headers[-4:])
        return (h[ORIGIN_TOPIC].decode(), int(h[ORIGIN_PARTITION]), int(h[ORIGIN_OFFSET]),
                int(h[ORIGIN_TIMESTAMP]))

    def copied_headers(self) -> tuple[tuple[str, bytes], ...]:
        """The headers before the origin headers: those of the record it copies."""
        return self.headers[:-4]


def fill(bootstrap: str, topic: str, count: int, users: int = 40, start_ms: int = T0,
         step_ms: int = 1000) -> None:
    """Events-like records: keyed by user, one every ``step_ms``, some with headers."""
    codec = default_codec()
    with RecordProducer(bootstrap) as producer:
        for i in range(count):
            user = f"user-{i % users}"
            value = codec.encode("user_event", {
                "event_id": uuid.uuid4().hex, "user_id": user, "type": "click",
                "item_id": f"item-{i}", "query": None, "session_id": None,
                "timestamp": start_ms + i * step_ms, "context": {}})
            headers = [("trace", f"t{i}".encode())] if i % 3 == 0 else None
            producer.produce(topic, user.encode(), value, headers=headers,
                             timestamp=start_ms + i * step_ms)


def read_all(bootstrap: str, topic: str, committed_only: bool = True) -> list[Rec]:
    """Every record of ``topic`` (read_committed unless told), partition by partition."""
    partitions = partition_count(bootstrap, topic) or 0
    consumer = Consumer(consumer_config(bootstrap, f"read-{uuid.uuid4().hex[:8]}", **{
        "enable.partition.eof": True,
        "isolation.level": "read_committed" if committed_only else "read_uncommitted"}))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out, at_end, deadline = [], set(), time.monotonic() + 60
    try:
        while len(at_end) < partitions and time.monotonic() < deadline:
            for msg in consumer.consume(5000, 1.0):
                if msg.error() is None:
                    out.append(Rec(msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(),
                                   msg.value(), tuple(msg.headers() or ())))
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
    finally:
        consumer.close()
    assert len(at_end) == partitions, f"could not read {topic} to its end"
    return out


def replay(kafka, cli, *args: str, data_dir=None, timeout: float = 120) -> \
        subprocess.CompletedProcess:
    env = kafka.env(STREAMREC_DATA_DIR=str(data_dir)) if data_dir else kafka.env()
    return subprocess.run([*cli, "replay", "--quiet", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def assert_exact_copy(source: list[Rec], target: list[Rec], source_topic: str,
                      same_partitions: bool = True) -> None:
    """``target`` holds each record of ``source`` once, equal, in each key's order."""
    by_origin = {(r.partition, r.offset): r for r in source}
    seen = Counter((r.origin()[1], r.origin()[2]) for r in target)
    assert set(seen) == set(by_origin) and max(seen.values()) == 1
    for copy in target:
        topic, partition, offset, timestamp = copy.origin()
        original = by_origin[(partition, offset)]
        assert topic == source_topic and timestamp == original.timestamp
        assert (copy.key, copy.value, copy.copied_headers()) == (
            original.key, original.value, original.headers)
        if same_partitions:
            assert copy.partition == original.partition
    source_order, target_order = defaultdict(list), defaultdict(list)
    for r in sorted(source, key=lambda r: (r.partition, r.offset)):
        source_order[r.key].append(r.offset)
    for r in sorted(target, key=lambda r: (r.partition, r.offset)):
        target_order[r.key].append(r.origin()[2])
    assert target_order == source_order
    partitions_of_key = defaultdict(set)
    for r in target:
        partitions_of_key[r.key].add(r.partition)
    assert all(len(p) == 1 for p in partitions_of_key.values())


def test_time_range_replay_copies_exactly_that_range(kafka, topic_factory, cli) -> None:
    source = topic_factory("events")
    fill(kafka.private, source, 3000)  # one record a second from T0
    since, until = T0 + 1000 * 1000, T0 + 2500 * 1000
    target = f"{source}.replay"
    result = replay(kafka, cli, "--from-topic", source, "--to-topic", target, "--since",
                    format_ms(since), "--until", str(until), "--rate", "0")
    assert result.returncode == 0, result.stderr
    assert "replayed 1,500 records" in result.stderr
    wanted = [r for r in read_all(kafka.private, source) if since <= r.timestamp < until]
    assert len(wanted) == 1500
    assert_exact_copy(wanted, read_all(kafka.private, target), source)


def test_offset_ranges_into_a_topic_with_other_partitions_keep_each_keys_order(
        kafka, topic_factory, cli) -> None:
    source, target = topic_factory("events", partitions=4), topic_factory("wide", partitions=6)
    fill(kafka.private, source, 2000, users=97)
    result = replay(kafka, cli, "--from-topic", source, "--to-topic", target,
                    "--offsets", "0:10-,1:0-99,3:5-5", "--rate", "0")
    assert result.returncode == 0, result.stderr
    assert "re-partitioned by key" in result.stderr
    everything = read_all(kafka.private, source)
    wanted = [r for r in everything if (r.partition == 0 and r.offset >= 10)
              or (r.partition == 1 and r.offset <= 99) or (r.partition, r.offset) == (3, 5)]
    assert_exact_copy(wanted, read_all(kafka.private, target), source, same_partitions=False)


def test_kill_9_mid_replay_then_resume_copies_each_record_exactly_once(
        kafka, topic_factory, unique, cli, tmp_path) -> None:
    source = topic_factory("events")
    fill(kafka.private, source, 4000, users=61)
    target, name = f"{source}.replay", unique("resume")
    args = ["--from-topic", source, "--to-topic", target, "--since", format_ms(T0),
            "--until", format_ms(T0 + 4000 * 1000), "--resume", name]
    checkpoint = tmp_path / "replay" / f"{name}.json"
    env = kafka.env(STREAMREC_DATA_DIR=str(tmp_path))
    slow = subprocess.Popen([*cli, "replay", "--quiet", *args, "--rate", "500",
                             "--commit-interval", "0.7"], env=env, stderr=subprocess.PIPE)
    try:
        _wait_for_progress(checkpoint, at_least=600, timeout_s=60)
        time.sleep(0.35)  # most likely inside an open transaction now
    finally:
        slow.kill()  # SIGKILL: no cleanup, no abort of the open transaction
        slow.wait(10)
    killed_at = json.loads(checkpoint.read_text())
    assert not killed_at["complete"]
    committed = read_all(kafka.private, target)
    assert 600 <= len(committed) < 4000
    # The dead run's open transaction holds records no read_committed reader may ever see.
    assert len(read_all(kafka.private, target, committed_only=False)) > len(committed)
    # As if it had died between committing and writing the file: the file lags the commits,
    # and the offsets committed in the transactions must win.
    killed_at["next"] = {p: start for p, (start, _end) in killed_at["ranges"].items()}
    checkpoint.write_text(json.dumps(killed_at))

    result = replay(kafka, cli, *args, "--rate", "0", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    assert_exact_copy(read_all(kafka.private, source), read_all(kafka.private, target), source)
    assert json.loads(checkpoint.read_text())["complete"]

    again = replay(kafka, cli, *args, data_dir=tmp_path)
    assert again.returncode == 0 and "already complete" in again.stderr
    assert len(read_all(kafka.private, target)) == 4000


def test_a_source_with_aborted_transactions_replays_its_committed_records_only(
        kafka, topic_factory, cli) -> None:
    source = topic_factory("txn", partitions=2)
    producer = Producer(producer_config(kafka.private,
                                        **{"transactional.id": f"test-{uuid.uuid4().hex}"}))
    producer.init_transactions(30)
    for batch, commit in [(range(0, 100), True), (range(100, 150), False),
                          (range(150, 250), True)]:
        producer.begin_transaction()
        for i in batch:
            producer.produce(source, f"v{i}".encode(), f"k{i % 9}".encode())
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    target = f"{source}.replay"
    started = time.monotonic()
    # The ranges end with a commit marker, after the last record: the end is found by EOF.
    result = replay(kafka, cli, "--from-topic", source, "--to-topic", target,
                    "--offsets", "0:0-,1:0-", "--rate", "0")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20
    committed = read_all(kafka.private, source)
    assert len(committed) == 200
    assert_exact_copy(committed, read_all(kafka.private, target), source)


def _wait_for_progress(checkpoint, at_least: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if checkpoint.exists():
            doc = json.loads(checkpoint.read_text())
            done = sum(doc["next"][p] - start for p, (start, _end) in doc["ranges"].items())
            if done >= at_least:
                return
        time.sleep(0.05)
    pytest.fail(f"the replay did not reach {at_least} records in {timeout_s} s")


def test_capped_rate_is_kept(kafka, topic_factory, cli) -> None:
    source = topic_factory("events")
    fill(kafka.private, source, 3000)
    started = time.monotonic()
    result = replay(kafka, cli, "--from-topic", source, "--to-topic", f"{source}.r",
                    "--offsets", "0:0-,1:0-,2:0-,3:0-", "--rate", "1000")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "3,000 records at up to 1,000 events/s: about 3 s" in result.stderr
    assert 2.8 < elapsed < 8  # 3 s of pacing plus the CLI's start-up


def test_transform_callback_rewrites_and_drops_records(kafka, topic_factory) -> None:
    source, target = topic_factory("events"), topic_factory("samples")
    fill(kafka.private, source, 400)
    rng = resolve_offset_range(kafka.private, source, {p: (0, None) for p in range(4)})

    def even_only(msg) -> OutRecord | None:
        if msg.offset() % 2:
            return None
        return OutRecord(b"seen:" + msg.key(), msg.key(), [("kind", b"sample")])

    reader = RangeReader(kafka.private, rng)
    try:
        with TargetWriter(kafka.private, target) as writer:
            report = copy_range(reader, writer, transform=even_only, rate=None)
    finally:
        reader.close()
    got = read_all(kafka.private, target)
    assert report.read == 400 and report.written == len(got) == report.read - report.dropped
    assert all(r.origin()[2] % 2 == 0 and r.value == b"seen:" + r.key for r in got)
    assert all(r.copied_headers() == (("kind", b"sample"),) for r in got)


def test_dry_run_shows_ranges_and_copies_nothing(kafka, topic_factory, cli) -> None:
    source = topic_factory("events")
    fill(kafka.private, source, 100)
    target = f"{source}.never"
    result = replay(kafka, cli, "--from-topic", source, "--to-topic", target,
                    "--offsets", "2:3-12", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split() == ["2", "3", "12", "10", "10"] for line in lines), result.stdout
    assert "10 records at up to 20,000 events/s" in result.stdout
    assert partition_count(kafka.private, target) is None


def test_refusals_say_what_to_do(kafka, topic_factory, unique, cli, tmp_path) -> None:
    source = topic_factory("events")
    fill(kafka.private, source, 50)
    base = ["--from-topic", source, "--to-topic", f"{source}.r"]
    cases = [
        (["--since", "2020-01-01", "--until", "2020-01-02"],
         f"nothing to replay: '{source}' has no records from 2020-01-01T00:00:00.000Z"),
        (["--since", "-1h"], "its records span 2024-05-01T12:00:00.000Z"),
        (["--offsets", "0:0-5000"], "end at"),
        (["--offsets", "9:0-1"], "there is no partition 9"),
    ]
    for extra, message in cases:
        result = replay(kafka, cli, *base, *extra)
        assert result.returncode == 2 and message in result.stderr, (extra, result.stderr)
    missing = replay(kafka, cli, "--from-topic", unique("nope"), "--to-topic", "x",
                     "--offsets", "0:0-")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    name = unique("job")
    first = replay(kafka, cli, *base, "--offsets", "0:0-", "--resume", name, data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    other = replay(kafka, cli, "--from-topic", source, "--to-topic", f"{source}.other",
                   "--resume", name, data_dir=tmp_path)
    assert other.returncode == 2 and "use another --resume name" in other.stderr
    changed = replay(kafka, cli, *base, "--offsets", "1:0-", "--resume", name, data_dir=tmp_path)
    assert changed.returncode == 2 and "was started with --offsets 0:0-" in changed.stderr
    (tmp_path / "replay" / f"{name}.json").unlink()
    lost = replay(kafka, cli, *base, "--offsets", "0:0-", "--resume", name, data_dir=tmp_path)
    assert lost.returncode == 2 and "holds positions of an earlier replay" in lost.stderr
