"""The pure parts of replay: times, offset ranges, range checks, checkpoints, pacing, refusals."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connectors.replay.checkpoint import (
    Checkpoint,
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from connectors.replay.history import Throttle
from connectors.replay.ranges import (
    PartitionRange,
    RangeError,
    offset_range,
    time_range,
    watermarks,
)
from connectors.replay.spec import SpecError, format_ms, parse_offsets, parse_time
from streamrec.cli import build_parser, main

NOW = 1_714_564_800_000  # 2024-05-01T12:00:00Z


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T12:00:00Z", NOW),
    ("2024-05-01T12:00:00", NOW),  # no zone: UTC
    ("2024-05-01T14:00:00+02:00", NOW),
    ("2024-05-01T12:00:00.250Z", NOW + 250),
    ("2024-05-01", NOW - 12 * 3_600_000),
    ("1714564800000", NOW),
    ("now", NOW),
    ("-2h", NOW - 7_200_000),
    ("-30m", NOW - 1_800_000),
    ("-1.5d", NOW - 129_600_000),
    ("-90s", NOW - 90_000),
    ("-250ms", NOW - 250),
    ("-1w", NOW - 604_800_000),
])
def test_parse_time_accepts_iso_epoch_ms_and_relative(text: str, expected: int) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("1714564800", "looks like epoch seconds; give milliseconds \\(1714564800000\\)"),
    ("42", "not a plausible epoch-ms"),
    ("yesterday", "cannot read time 'yesterday': use ISO-8601"),
    ("-2x", "cannot read time"),
    ("+2h", "cannot read time"),
])
def test_parse_time_refuses_with_the_accepted_forms(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_time(text, NOW)


def test_format_ms_is_iso_utc_and_round_trips() -> None:
    assert format_ms(NOW + 7) == "2024-05-01T12:00:00.007Z"
    assert parse_time(format_ms(NOW + 7), 0) == NOW + 7


def test_parse_offsets_reads_inclusive_ends_and_open_ends() -> None:
    assert parse_offsets("0:100-199, 1:0-, 3:7-7") == {0: (100, 200), 1: (0, None), 3: (7, 8)}


@pytest.mark.parametrize(("text", "message"), [
    ("0:10-5", "ends before it starts"),
    ("0:1-2,0:3-4", "partition 0 appears twice"),
    ("0-10", "write PARTITION:START-END"),
    ("a:1-2", "cannot read offset range"),
    ("0:-1-5", "cannot read offset range"),
    ("", "cannot read offset range"),
])
def test_parse_offsets_refuses_malformed_ranges(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_offsets(text)


MARKS = {0: (0, 100), 1: (50, 80), 2: (0, 0)}


def test_offset_range_checks_against_watermarks() -> None:
    rng = offset_range("t", {0: (10, 20), 1: (50, None)}, MARKS)
    assert rng.partitions == (PartitionRange(0, 10, 20), PartitionRange(1, 50, 80))
    assert rng.total == 40 and rng.partition_count == 3
    with pytest.raises(RangeError, match="now starts at offset 50"):
        offset_range("t", {1: (0, 60)}, MARKS)
    with pytest.raises(RangeError, match=r"ends at offset 99 .*0:90- to replay to the end"):
        offset_range("t", {0: (90, 101)}, MARKS)
    with pytest.raises(RangeError, match="partitions 0-2; there is no partition 5"):
        offset_range("t", {5: (0, 1)}, MARKS)


def test_time_range_maps_missing_answers_to_the_end_and_clips_to_retention() -> None:
    # Partition 0: times found at 30 and 60. Partition 1: the start offset was deleted, and no
    # record is as late as `until`. Partition 2: empty.
    rng = time_range("t", {0: 30, 1: 10, 2: -1}, {0: 60, 1: -1, 2: -1}, MARKS)
    assert rng.partitions == (PartitionRange(0, 30, 60), PartitionRange(1, 50, 80),
                              PartitionRange(2, 0, 0))
    late = time_range("t", {0: -1, 1: -1, 2: -1}, {0: -1, 1: -1, 2: -1}, MARKS)
    assert late.total == 0


def _checkpoint() -> Checkpoint:
    return Checkpoint("nightly", "private", "events", "events.replay", "--offsets 0:0-,1:5-",
                      {0: (0, 100), 1: (5, 80)})


def test_checkpoint_round_trips_and_advances_only_forward(tmp_path) -> None:
    cp = _checkpoint()
    assert cp.next == {0: 0, 1: 5} and cp.done == 0 and cp.total == 175 and not cp.complete
    cp.advance({0: 40, 1: 3})
    cp.advance({0: 30})  # an older position never moves it back
    assert cp.next == {0: 40, 1: 5} and cp.done == 40
    path = checkpoint_path(tmp_path, "nightly")
    save_checkpoint(path, cp)
    assert path == tmp_path / "replay" / "nightly.json"
    assert load_checkpoint(path) == cp
    cp.advance({0: 1_000, 1: 80})  # clamped to the range's end
    save_checkpoint(path, cp)
    doc = json.loads(path.read_text())
    assert doc["next"] == {"0": 100, "1": 80} and doc["complete"] is True
    assert doc["ranges"] == {"0": [0, 100], "1": [5, 80]}
    assert [p.name for p in path.parent.iterdir()] == ["nightly.json"]  # no temporary left


def test_checkpoint_is_replaced_atomically_under_concurrent_reads(tmp_path) -> None:
    path = checkpoint_path(tmp_path, "busy")
    cp = Checkpoint("busy", "private", "a", "b", "", {p: (0, 10**9) for p in range(200)})
    save_checkpoint(path, cp)
    stop, torn = threading.Event(), []

    def read_all_the_time() -> None:
        while not stop.is_set():
            try:
                load_checkpoint(path)
            except CheckpointError as exc:
                torn.append(exc)

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    for step in range(1, 150):
        cp.advance({p: step * 1000 for p in range(200)})
        save_checkpoint(path, cp)
    stop.set()
    reader.join()
    assert torn == []
    assert load_checkpoint(path).next[199] == 149_000


def test_missing_and_corrupt_checkpoints(tmp_path) -> None:
    path = checkpoint_path(tmp_path, "x")
    assert load_checkpoint(path) is None
    path.parent.mkdir(parents=True)
    path.write_text('{"format": 1, "name": "x"')
    with pytest.raises(CheckpointError, match="unreadable.*Delete it to start that replay over"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "", ".hidden", "x" * 101, "sp ace"])
def test_checkpoint_names_that_are_not_plain_file_names_are_refused(tmp_path, name) -> None:
    with pytest.raises(CheckpointError, match="is not usable"):
        checkpoint_path(tmp_path, name)


def test_throttle_keeps_the_average_rate() -> None:
    throttle = Throttle(5_000)
    started = time.monotonic()
    for _ in range(20):
        throttle(100)  # 2,000 records at 5,000/s: 0.4 s
    elapsed = time.monotonic() - started
    assert 0.4 - 0.1 <= elapsed < 0.8  # at most max_credit_s early; sleeping may overshoot


def test_relative_times_are_accepted_as_option_values() -> None:
    args = build_parser().parse_args(
        ["replay", "--from-topic", "a", "--to-topic", "b", "--since", "-2h", "--until", "-90s"])
    assert (args.since, args.until) == ("-2h", "-90s")


@pytest.mark.parametrize(("argv", "message"), [
    (["--from-topic", "events", "--to-topic", "events", "--offsets", "0:0-"],
     "refusing to replay 'events' into itself"),
    (["--from-topic", "a", "--to-topic", "b", "--offsets", "0:0-", "--since", "-1h"],
     "either --since/--until or --offsets"),
    (["--from-topic", "a", "--to-topic", "b", "--until", "-1h"], "--until needs --since"),
    (["--from-topic", "a", "--to-topic", "b", "--offsets", "0:0-", "--rate", "-5"],
     "--rate must be 0"),
    (["--from-topic", "a", "--to-topic", "b", "--since", "soon"], "cannot read time 'soon'"),
    (["--from-topic", "a", "--to-topic", "b", "--offsets", "0:9-1"], "ends before it starts"),
    (["--from-topic", "a", "--to-topic", "b", "--offsets", "0:0-", "--resume", "../x"],
     "is not usable"),
])
def test_refusals_exit_2_with_a_message_before_any_kafka_call(argv, message, capsys,
                                                             monkeypatch, tmp_path) -> None:
    # An unreachable cluster: a refusal that reached Kafka would fail differently and slowly.
    monkeypatch.setenv("STREAMREC_PRIVATE_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(tmp_path))
    assert main(["replay", *argv]) == 2
    assert message in capsys.readouterr().err


class _LeaderlessAtFirst:
    """A consumer whose partitions answer only after ``misses`` attempts each."""

    def __init__(self, misses: int, code: int) -> None:
        self.misses, self.code, self.calls = misses, code, Counter()

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.calls[tp.partition] += 1
        if self.calls[tp.partition] <= self.misses:
            raise KafkaException(KafkaError(self.code))
        return (0, 10 + tp.partition)


def test_watermarks_wait_for_a_new_topics_leaders() -> None:
    consumer = _LeaderlessAtFirst(2, KafkaError.NOT_LEADER_FOR_PARTITION)
    assert watermarks(consumer, "t", 2, timeout_s=5) == {0: (0, 10), 1: (0, 11)}
    assert consumer.calls == {0: 3, 1: 3}


def test_watermarks_raise_other_errors_and_give_up_at_the_timeout() -> None:
    with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
        watermarks(_LeaderlessAtFirst(1, KafkaError.TOPIC_AUTHORIZATION_FAILED), "t", 1)
    never = _LeaderlessAtFirst(10**6, KafkaError.LEADER_NOT_AVAILABLE)
    with pytest.raises(KafkaException, match="LEADER_NOT_AVAILABLE"):
        watermarks(never, "t", 1, timeout_s=0.3)
    assert 2 <= never.calls[0] <= 10
