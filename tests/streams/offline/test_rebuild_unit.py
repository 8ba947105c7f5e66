"""The pure parts of rebuild-state and backfill-training: no broker, real RocksDB in tmp_path."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from connectors.privacy.anonymizer import Anonymizer
from schemas import default_codec
from schemas.records import TrainingSample
from streamrec.cli import build_parser, main
from streams.offline.backfill import LiveSampler
from streams.offline.rebuild import RebuildReport, StateBuild, next_generation
from streams.pipeline import BatchProcessor, Incoming
from streams.popularity import DecayedPopularity
from streams.user_state import UserState

CODEC = default_codec()
INGEST = 1_800_000_000_000


@dataclass
class Rec:
    """A consumed events-topic record as replay hands it over (``replay.history.Record``)."""

    raw_key: bytes | None
    raw_value: bytes | None
    at_partition: int
    at_offset: int

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self.at_partition

    def offset(self) -> int:
        return self.at_offset

    def timestamp(self) -> tuple[int, int]:
        return 1, INGEST + self.at_offset

    def key(self) -> bytes | None:
        return self.raw_key

    def value(self) -> bytes | None:
        return self.raw_value

    def headers(self) -> None:
        return None


def _event(user: str, n: int, query: str | None = None) -> dict:
    return {"event_id": f"{user}-{n}", "user_id": user, "type": "search" if query else "click",
            "item_id": None if query else f"item-{n % 7}", "query": query,
            "session_id": f"s-{user}", "timestamp": 1_700_000_000_000 + n * 1000,
            "context": {"ip": "10.1.2.3"}}


def _records(users: int = 9, per_user: int = 5, partitions: int = 3) -> list[Rec]:
    """Events of ``users`` users, each user in one partition, offsets rising per partition."""
    offsets = [0] * partitions
    out = []
    for n in range(per_user):
        for u in range(users):
            user, partition = f"user-{u}", u % partitions
            event = _event(user, n, query=f"red shoe {n}" if n == 2 else None)
            out.append(Rec(user.encode(), CODEC.encode("user_event", event), partition,
                           offsets[partition]))
            offsets[partition] += 1
    return out


ANONYMIZER = Anonymizer(b"unit-secret", 1, n_buckets=64, time_bucket_ms=3_600_000,
                        sample_rate=1.0)


def _processor(anonymizer: Anonymizer | None = None) -> BatchProcessor:
    """Built like the worker builds it (see streams/app.py), optionally with sampling."""
    return BatchProcessor(CODEC, top_k=3, history_len=3, buckets=ANONYMIZER.query_buckets,
                          popularity=DecayedPopularity(),
                          anonymize=anonymizer.anonymize if anonymizer else None)


def _build(tmp_path, records: list[Rec], batch: int) -> tuple[dict[str, bytes], RebuildReport]:
    build, report = StateBuild(tmp_path / f"build-{batch}"), RebuildReport()
    processor = _processor()
    for start in range(0, len(records), batch):
        build.apply(processor, "events", records[start:start + batch], report)
    states = {user: value for user, value, _state, _ingest in build.users()}
    build.remove()
    return states, report


@pytest.mark.parametrize(("app_id", "expected"), [
    ("streamrec", "streamrec-g2"), ("streamrec-g2", "streamrec-g3"),
    ("shop-eu-g9", "shop-eu-g10"), ("app-gx", "app-gx-g2"), ("-g2", "-g2-g2"),
])
def test_next_generation_counts_up(app_id: str, expected: str) -> None:
    assert next_generation(app_id) == expected


def test_states_count_every_event_and_remember_the_last_source_position(tmp_path) -> None:
    records = _records()
    states, report = _build(tmp_path, records, batch=1000)
    assert report.events == report.applied == len(records) == 45
    assert set(states) == {f"user-{u}" for u in range(9)}
    for user, value in states.items():
        state = UserState.from_bytes(value)
        mine = [r for r in records if r.raw_key == user.encode()]
        assert (state.clicks, state.searches) == (4, 1)
        assert (state.partition, state.offset) == (mine[-1].at_partition, mine[-1].at_offset)
        assert state.last_event_id == f"{user}-4"
        assert state.items == ["item-1", "item-3", "item-4"]  # the last 3 (history_len)
        assert state.query_buckets == ANONYMIZER.query_buckets("red shoe 2")


def test_states_do_not_depend_on_batch_boundaries(tmp_path) -> None:
    records = _records(users=13, per_user=7, partitions=4)
    one_by_one, _ = _build(tmp_path, records, batch=1)
    uneven, _ = _build(tmp_path, records, batch=17)
    at_once, _ = _build(tmp_path, records, batch=10_000)
    assert one_by_one == uneven == at_once


def test_invalid_records_are_skipped_and_counted(tmp_path) -> None:
    good = _records(users=2, per_user=1, partitions=1)
    bad = [Rec(b"user-0", b"\x00not avro", 0, 2),
           Rec(b"someone-else", CODEC.encode("user_event", _event("user-1", 9)), 0, 3)]
    states, report = _build(tmp_path, good + bad, batch=10)
    assert (report.events, report.applied, report.invalid) == (4, 2, 2)
    assert {u: UserState.from_bytes(v).clicks for u, v in states.items()} == {
        "user-0": 1, "user-1": 1}


def test_the_store_keeps_ingest_times_partitions_and_starts_empty(tmp_path) -> None:
    build = StateBuild(tmp_path / "b")
    msg = Incoming(b"u", None, "events", 2, 40, 1234)
    build.put("u", UserState(partition=2, offset=40).to_bytes(), msg)
    assert build.partition_of(b"u") == 2 and build.partition_of(b"nobody") is None
    assert [(u, s.offset, t) for u, _v, s, t in build.users()] == [("u", 40, 1234)]
    build._db.close()  # as a run that died would leave it
    again = StateBuild(tmp_path / "b")
    assert list(again.users()) == [] and again.get("u", msg) is None
    again.remove()
    assert not (tmp_path / "b").exists()


def test_a_backfilled_sample_is_the_one_the_worker_emits(tmp_path) -> None:
    records = _records(users=5, per_user=3, partitions=2)
    sampler = LiveSampler(_processor(ANONYMIZER), "events")
    for rec in records:
        out = sampler(rec)
        event = CODEC.decode("user_event", rec.raw_value)
        expected = ANONYMIZER.anonymize(event, rec.at_offset)
        assert out is not None and CODEC.read(TrainingSample, out.value) == expected
        assert out.key == expected.pseudonym.encode() and out.partition == -1
    # Same records again: same samples (the ids are keyed hashes of the event ids).
    again = LiveSampler(_processor(ANONYMIZER), "events")
    assert [again(r).value for r in records] == [sampler(r).value for r in records]


def test_backfill_skips_what_the_worker_would_not_sample() -> None:
    nobody = Anonymizer(b"unit-secret", 1, n_buckets=64, time_bucket_ms=3_600_000,
                        sample_rate=0.0)
    unsampled = LiveSampler(_processor(nobody), "events")
    rec = _records(users=1, per_user=1)[0]
    assert unsampled(rec) is None and unsampled.not_sampled == 1
    sampler = LiveSampler(_processor(ANONYMIZER), "events")
    wrong_key = Rec(b"other", rec.raw_value, 0, 1)
    assert sampler(Rec(b"k", b"junk", 0, 0)) is None and sampler(wrong_key) is None
    assert sampler.invalid == 2
    with pytest.raises(ValueError, match="must anonymise"):
        LiveSampler(_processor(None), "events")


def test_the_copy_form_of_replay_parses_as_before_and_the_jobs_parse() -> None:
    parser = build_parser()
    copy = parser.parse_args(["replay", "--from-topic", "a", "--to-topic", "b", "--since", "-2h",
                              "--rate", "0"])
    assert (copy.job, copy.from_topic, copy.to_topic, copy.since, copy.rate) == (
        None, "a", "b", "-2h", 0.0)
    rebuild = parser.parse_args(["replay", "rebuild-state", "--since", "-7d", "--until", "-1h",
                                 "--app-id", "new", "--emit-recommendations", "recs"])
    assert (rebuild.job, rebuild.since, rebuild.until, rebuild.app_id,
            rebuild.emit_recommendations) == ("rebuild-state", "-7d", "-1h", "new", "recs")
    backfill = parser.parse_args(["replay", "backfill-training", "--since", "-30m"])
    assert (backfill.job, backfill.since, backfill.rate) == ("backfill-training", "-30m", 20_000)


@pytest.mark.parametrize(("argv", "message"), [
    (["--to-topic", "x"], "the following arguments are required: --from-topic"),
    (["--from-topic", "events", "rebuild-state", "--since", "-1h"],
     "--from-topic belong to a copy; rebuild-state reads the events topic"),
    (["rebuild-state", "--since", "-1h", "--app-id", "live"], "is the live app id"),
    (["backfill-training", "--since", "-1h", "--rate", "-5"], "--rate must be 0"),
    (["rebuild-state", "--since", "-1h", "--app-id", "../up"], "app id '../up' is not usable"),
    (["rebuild-state", "--since", "-1h", "--app-id", "a b"], "app id 'a b' is not usable"),
])
def test_job_refusals_exit_2_before_any_kafka_call(argv, message, capsys, monkeypatch,
                                                   tmp_path) -> None:
    monkeypatch.setenv("STREAMREC_PRIVATE_BOOTSTRAP", "127.0.0.1:1")  # nothing listens there
    monkeypatch.setenv("STREAMREC_APP_ID", "live")
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(tmp_path))
    try:
        code = main(["replay", *argv])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
