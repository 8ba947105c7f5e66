"""The hybrid-cloud learning loop on real clusters and real data.

Anonymised YooChoose samples on a public training topic → incremental trainer → signed releases →
model sync on the private side → ``current`` link → a running worker serves the new model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from connectors.datasets.readers import read_events
from connectors.kafka.clients import producer_config
from connectors.kafka.topics import TopicSpec, ensure_topics
from connectors.privacy.anonymizer import Anonymizer
from connectors.releases.records import (
    OFFSET_FROM,
    OFFSET_UNTIL,
    Release,
    ReleasePublisher,
    read_releases,
    signed_release,
)
from connectors.releases.signing import generate_keypair
from connectors.releases.store import LocalStore
from connectors.training.loop import Trainer, TrainerConfig
from model.artifact import load_artifact
from model.config import ModelConfig, TrainConfig
from model.incremental import SampleBuffer, heldout_metrics, train_candidate
from model.scorer import Scorer
from schemas import default_codec
from schemas.records import TrainingSample
from streamrec.harness import WorkerProcess, http_get

pytestmark = [pytest.mark.integration, pytest.mark.slow]
USERS = 4000  # YooChoose sessions: about 16k clicks
STREAM_SHARE = 0.8  # the rest is the later window the releases are judged on
TINY = ModelConfig(n_items=1, max_len=20, dim=16, n_layers=1, n_heads=1, dropout=0.1,
                   n_query_buckets=4096, top_k=100)
WINDOW = TrainConfig(epochs=2, lr=5e-3, threads=2)
FOLLOW_ARGS = ["--dim", "16", "--layers", "1", "--heads", "1", "--max-len", "20",
               "--epochs", "2", "--lr", "5e-3", "--dropout", "0.1"]


@pytest.fixture(scope="module")
def samples(datasets) -> list[TrainingSample]:
    """The sessions' clicks in time order, anonymised as the private worker would."""
    path = datasets / "yoochoose-rsc15-100k" / "yoochoose-clicks-100k_train_full.txt"
    anonymizer = Anonymizer(b"learning-loop-test", 1, 4096, 3_600_000, 1.0)
    seq: dict[str, int] = {}
    out = []
    for event in read_events("yoochoose", path, limit_users=USERS):
        seq[event["user_id"]] = seq.get(event["user_id"], -1) + 1
        out.append(anonymizer.anonymize(event, seq[event["user_id"]]))
    return out


def produce(bootstrap: str, topic: str, samples: list[TrainingSample]
            ) -> dict[str, tuple[int, int]]:
    """Send samples keyed by pseudonym; returns sample_id -> (partition, offset)."""
    codec = default_codec()
    placed: dict[str, tuple[int, int]] = {}

    def delivered(err, msg) -> None:
        assert err is None, err
        placed[codec.decode("training_sample", msg.value())["sample_id"]] = (
            msg.partition(), msg.offset())

    producer = Producer(producer_config(bootstrap))
    for s in samples:
        producer.produce(topic, codec.write(s), s.pseudonym.encode(),
                         on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(60) == 0
    return placed


def trained_by(release: Release, placed: tuple[int, int]) -> bool:
    """Whether a sample at (partition, offset) lies before the release's trained-through mark."""
    return placed[1] < release.offsets(OFFSET_UNTIL).get(placed[0], 0)


@pytest.fixture(scope="module")
def loop(kafka, samples, tmp_path_factory) -> dict:
    """The trainer run in-process over the stream part: at least two windows, releases out."""
    root = tmp_path_factory.mktemp("loop")
    generate_keypair(root / "trainer.key", root / "trainer.pub")
    suffix = root.name
    train_topic, releases_topic = f"train-{suffix}-{time.time_ns()}", f"rel-{time.time_ns()}"
    ensure_topics(kafka.public, [TopicSpec(train_topic, 4)])
    stream = samples[: int(len(samples) * STREAM_SHARE)]
    placed = produce(kafka.public, train_topic, stream)
    config = TrainerConfig(kafka.public, train_topic, releases_topic, LocalStore(root / "store"),
                           root / "trainer.key", TINY, WINDOW, window_clicks=len(stream) // 3 + 1,
                           window_seconds=3.0)
    stats = Trainer(config).run(idle_exit_s=4)
    return {"root": root, "releases": read_releases(kafka.public, releases_topic),
            "stats": stats, "stream": stream, "later": samples[len(stream):], "placed": placed,
            "releases_topic": releases_topic}


def test_releases_trained_on_more_data_score_higher_later(loop, tmp_path) -> None:
    releases = loop["releases"]
    assert len(releases) >= 2, loop["stats"]
    assert [r.parent_version for r in releases] == [None, *(r.version for r in releases[:-1])]
    buffer = SampleBuffer()
    for arrival, s in enumerate(loop["stream"] + loop["later"]):
        buffer.add(s, arrival)
    cases = buffer.heldout(len(loop["stream"]))  # next clicks of the later window
    assert len(cases) > 500
    prequential = {r.version: heldout_metrics(Scorer(_path(r), device="cpu"), cases)
                   for r in releases}
    report = tmp_path / "prequential.json"
    report.write_text(json.dumps({"cases": len(cases), "by_version": prequential}, indent=1))
    print(f"prequential HR@10/NDCG@10 on {len(cases)} later cases ({report}):",
          {v: (round(m["HR@10"], 4), round(m["NDCG@10"], 4)) for v, m in prequential.items()})
    first, last = prequential[releases[0].version], prequential[releases[-1].version]
    assert last["HR@10"] > first["HR@10"] and last["NDCG@10"] > first["NDCG@10"], prequential
    for r in releases:  # every release says what it was judged on
        assert r.metrics["heldout_cases"] > 0 and "ndcg@10" in r.metrics


def _path(release: Release) -> Path:
    return Path(release.artifact_uri.removeprefix("file://"))


def test_items_first_seen_late_become_recommendable(loop) -> None:
    first, final = loop["releases"][0], loop["releases"][-1]
    placed = loop["placed"]
    clicks: dict[str, list[tuple[int, int]]] = {}
    for s in loop["stream"]:
        clicks.setdefault(s.item_id, []).append(placed[s.sample_id])
    # Late: no click of the item lies in the first release's data, some in the final one's.
    late = {item for item, where in clicks.items()
            if not any(trained_by(first, w) for w in where)
            and any(trained_by(final, w) for w in where)}
    assert len(late) > 50
    old, new = Scorer(_path(first), device="cpu"), Scorer(_path(final), device="cpu")
    assert not any(old.knows(i) for i in late)
    assert all(new.knows(i) for i in late)
    assert new.artifact.item_ids[: len(old.artifact.item_ids)] == old.artifact.item_ids
    # The histories that led to a late item's clicks: is it now among the top 20 there?
    histories = _histories_before(loop["stream"], late)
    recommended = {item for recs in new.top_k(histories, 20) for item, _ in recs}
    print(f"{len(late)} late items, {len(recommended & late)} in a top-20 of {len(histories)} "
          "histories that led to them")
    assert len(recommended & late) >= 0.1 * len(late), (len(recommended & late), len(late))
    assert final.metrics["new_items"] > 0


def _histories_before(stream: list[TrainingSample], items: set[str]) -> list[list[str]]:
    sessions: dict[str, list[str]] = {}
    out = []
    for s in stream:
        history = sessions.setdefault(s.pseudonym, [])
        if s.item_id in items and history and s.item_id not in history:
            out.append(list(history))
        history.append(s.item_id)
    return out


def test_a_killed_trainer_resumes_without_skipping_or_repeating(kafka, loop, cli,
                                                               tmp_path) -> None:
    stream = loop["stream"][: len(loop["stream"]) // 2]
    train_topic = f"train-kill-{time.time_ns()}"
    ensure_topics(kafka.public, [TopicSpec(train_topic, 4)])
    placed = produce(kafka.public, train_topic, stream)
    env = kafka.env(STREAMREC_TRAIN_TOPIC=train_topic,
                    STREAMREC_RELEASES_TOPIC=f"rel-kill-{time.time_ns()}",
                    STREAMREC_MODEL_STORE=str(tmp_path / "store"),
                    STREAMREC_SIGNING_KEY_PATH=str(loop["root"] / "trainer.key"))
    args = [sys.executable, "-m", "streamrec.cli.follow", *FOLLOW_ARGS, "--window-clicks",
            str(len(stream) // 4 + 1), "--window-seconds", "3", "--idle-exit", "4"]
    log = tmp_path / "first.log"
    with log.open("wb") as out:
        first = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    deadline = time.monotonic() + 90
    while not read_releases(kafka.public, env["STREAMREC_RELEASES_TOPIC"], timeout_s=10):
        assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.3)
    os.killpg(first.pid, signal.SIGKILL)  # mid-way: the next window is being trained
    first.wait(10)
    # If the kill landed inside a release's transaction, committed reads wait until the broker
    # aborts it: the trainer's 30-s transaction timeout plus up to 10 s until the broker's next
    # sweep for timed-out transactions.
    before = read_releases(kafka.public, env["STREAMREC_RELEASES_TOPIC"], timeout_s=60)
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=150)
    assert second.returncode == 0, second.stderr[-3000:]
    releases = read_releases(kafka.public, env["STREAMREC_RELEASES_TOPIC"])
    assert len(releases) > len(before) >= 1
    assert releases[: len(before)] == before
    versions = [r.version for r in releases]
    assert len(set(versions)) == len(versions)
    assert [r.parent_version for r in releases] == [None, *versions[:-1]]
    assert [r.metrics["generation"] for r in releases] == list(range(1, len(releases) + 1))
    for previous, release in zip(releases, releases[1:], strict=False):
        until = previous.offsets(OFFSET_UNTIL)
        assert release.offsets(OFFSET_FROM) == {p: until.get(p, 0)
                                                for p in release.offsets(OFFSET_FROM)}
    resumed = before[-1]
    print(f"killed after {len(before)} release(s), {len(releases)} in all:",
          [(r.version, r.metrics["new_clicks"]) for r in releases])
    assert f"resuming after release {resumed.version}" in second.stderr
    assert str(resumed.offsets(OFFSET_UNTIL)) in second.stderr
    # Every click before the last mark was trained on exactly once, across the restart.
    clicks_before_mark = sum(trained_by(releases[-1], placed[s.sample_id]) for s in stream)
    assert sum(r.metrics["new_clicks"] for r in releases) == clicks_before_mark


def test_a_held_back_candidate_is_not_released_and_its_data_stays_pending(kafka, loop,
                                                                          tmp_path) -> None:
    anonymizer = Anonymizer(b"held-back-test", 1, 4096, 3_600_000, 1.0)
    # 200 sessions over 30 items, all of them seen in the first window: no new items later.
    events = [{"event_id": f"e{u}-{t}", "user_id": f"u{u}", "type": "click",
               "item_id": f"i{(u + t) % 30}", "timestamp": 1_700_000_000_000 + t}
              for u in range(200) for t in range(5)]
    samples = [anonymizer.anonymize(e, int(e["event_id"].split("-")[1])) for e in events]
    topic, releases_topic = f"train-held-{time.time_ns()}", f"rel-held-{time.time_ns()}"
    ensure_topics(kafka.public, [TopicSpec(topic, 4)])
    produce(kafka.public, topic, samples)

    def trainer(tolerance: float, window_clicks: int) -> Trainer:
        # tolerance -1: a candidate must beat the current model by 1.0 NDCG@10 (impossible);
        # tolerance 1: any candidate counts as not worse.
        return Trainer(TrainerConfig(kafka.public, topic, releases_topic,
                                     LocalStore(tmp_path / "store"),
                                     loop["root"] / "trainer.key", TINY, WINDOW,
                                     window_clicks=window_clicks, window_seconds=2.0,
                                     min_clicks=20, tolerance=tolerance))

    stats = trainer(-1.0, 500).run(max_windows=2, idle_exit_s=10)
    assert len(stats.released) == 1 and [r for _, r in stats.held_back] == ["worse"]
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == stats.released
    first = read_releases(kafka.public, releases_topic)
    assert [r.version for r in first] == stats.released
    # A restart resumes after the one release; one window (by time) takes all that is pending.
    again = trainer(1.0, 10_000).run(max_windows=1, idle_exit_s=10)
    releases = read_releases(kafka.public, releases_topic)
    assert [r.version for r in releases] == [*stats.released, *again.released]
    until = releases[0].offsets(OFFSET_UNTIL)
    assert releases[1].offsets(OFFSET_FROM) == {p: until.get(p, 0) for p in range(4)}
    # All clicks after the first release's data: its held-out 100 and the held-back 500,
    # less the newest fifth kept out for this window's comparison.
    assert releases[1].metrics["new_clicks"] == 600 - 120


@pytest.fixture
def worker_env(kafka, unique) -> dict[str, str]:
    """Settings of a private worker on fresh topics."""
    return kafka.env(
        STREAMREC_EVENTS_TOPIC=unique("events"), STREAMREC_RECOMMENDATIONS_TOPIC=unique("recs"),
        STREAMREC_DLQ_TOPIC=unique("dlq"), STREAMREC_APP_ID=unique("app"),
        STREAMREC_SCORING_DEVICE="cpu")


def models_cli(cli: list[str], env: dict[str, str], *args: str) -> str:
    """Run ``streamrec models ARGS``; its stdout (the command must succeed)."""
    done = subprocess.run([*cli, "models", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def served(worker: WorkerProcess, version: str | None = None, timeout_s: float = 30.0) -> str:
    """The version the worker serves; with ``version``, wait until it is that one."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = http_get(worker.url + "/model")[1]["version"]
        if version is None or now == version or time.monotonic() > deadline:
            return now
        time.sleep(0.3)


def bad_releases(loop: dict, parent: Release, tmp_path: Path) -> list[Release]:
    """Two releases that must not run: a damaged artifact (signed) and an unsigned one."""
    seqs = [[s.item_id for s in loop["later"][i:i + 5]] for i in range(0, 400, 5)]
    made = []
    for name in ("damaged", "unsigned"):
        made.append(train_candidate(load_artifact(_path(parent)), seqs, [[[]] * 5] * len(seqs),
                                    TINY, TrainConfig(epochs=1, threads=2),
                                    tmp_path / "store" / name, {"version": f"v-{name}"}))
    damaged = signed_release(made[0], made[0].path.as_uri(), loop["root"] / "trainer.key")
    onnx = made[0].path / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-64] + bytes(64))
    unsigned = Release(**{**signed_release(made[1], made[1].path.as_uri(),
                                           loop["root"] / "trainer.key").to_record(),
                          "signature": None})
    return [damaged, unsigned]


def test_sync_serves_releases_to_a_running_worker_and_refuses_bad_ones(
        kafka, loop, cli, worker_env, tmp_path) -> None:
    first, final = loop["releases"][0], loop["releases"][-1]
    topic = f"rel-sync-{time.time_ns()}"
    env = kafka.env(STREAMREC_DATA_DIR=str(tmp_path / "private"), STREAMREC_RELEASES_TOPIC=topic,
                    STREAMREC_VERIFY_KEY_PATH=str(loop["root"] / "trainer.pub"),
                    STREAMREC_SCORING_DEVICE="cpu")
    current = tmp_path / "private" / "models-private" / "current"
    with ReleasePublisher(kafka.public, topic) as publisher:
        publisher.publish(first)
        models_cli(cli, env, "sync", "--once")
        assert os.readlink(current) == first.version
        worker = WorkerProcess({**worker_env, "STREAMREC_MODEL_DIR": str(current)},
                               tmp_path / "worker").start()
        try:
            assert served(worker) == first.version
            publisher.publish(final)
            models_cli(cli, env, "sync", "--once")
            assert served(worker, final.version) == final.version  # hot-swapped via the link
            bad = bad_releases(loop, final, tmp_path)
            for release in bad:
                publisher.publish(release)
            models_cli(cli, env, "sync", "--once")
            listing = json.loads(models_cli(cli, env, "list", "--json"))
            reasons = {r["version"]: r["reason"] for r in listing["refused"]}
            assert "ArtifactError" in reasons["v-damaged"] and "sha256" in reasons["v-damaged"]
            assert "not signed" in reasons["v-unsigned"]
            assert listing["current"] == final.version
            time.sleep(3)  # longer than the worker's 2 s look at the link
            assert served(worker) == final.version and worker.alive()
            models_cli(cli, env, "rollback")
            assert served(worker, first.version) == first.version
            models_cli(cli, env, "promote", final.version)
            assert served(worker, final.version) == final.version
        finally:
            worker.stop()
    shutil.rmtree(tmp_path / "store", ignore_errors=True)
