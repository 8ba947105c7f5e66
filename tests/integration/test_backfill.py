"""Training backfill on the real clusters: the live worker's samples, via the mirror, audited."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from connectors.datasets.readers import read_events
from connectors.kafka.topics import TopicSpec, ensure_topics
from connectors.privacy.audit import Detector, audit_cluster
from connectors.replay.ranges import partition_count
from connectors.sdk.producer import EventProducer
from schemas import default_codec
from streamrec.harness import WorkerProcess
from tests.integration.test_replay import read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CODEC = default_codec()
SECRET = "backfill-test-secret"
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def yc_events(datasets) -> list[dict]:
    """The first 200 YooChoose users (sessions), every click, in time order."""
    path = datasets / "yoochoose-rsc15-100k" / "yoochoose-clicks-100k_train_full.txt"
    return list(read_events("yoochoose", path, limit_users=200))


@pytest.fixture
def env(kafka, unique) -> dict[str, str]:
    """Fresh topics; the worker's and the backfill's settings share the pseudonym secret."""
    env = kafka.env(
        STREAMREC_EVENTS_TOPIC=unique("events"), STREAMREC_RECOMMENDATIONS_TOPIC=unique("recs"),
        STREAMREC_DLQ_TOPIC=unique("dlq"), STREAMREC_APP_ID=unique("live"),
        STREAMREC_SAMPLES_TOPIC=unique("live-samples"), STREAMREC_PSEUDONYM_SECRET=SECRET,
        STREAMREC_BATCH_MAX_MS="10")
    ensure_topics(kafka.private, [TopicSpec(env["STREAMREC_EVENTS_TOPIC"], 4)])
    return env


def backfill(cli, env, samples_topic: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*cli, "replay", "backfill-training", "--quiet", *args],
        env=dict(env, STREAMREC_SAMPLES_TOPIC=samples_topic,
                 STREAMREC_MIRROR_ALLOWLIST=json.dumps([samples_topic])),
        capture_output=True, text=True, timeout=300)


def samples_of(kafka, topic: str) -> list[tuple[int, bytes, dict]]:
    """(partition, key, decoded sample) of every record of ``topic``."""
    return [(r.partition, r.key, CODEC.decode("training_sample", r.value))
            for r in read_all(kafka.private, topic)]


def canaries(events: list[dict]) -> list[str]:
    """Values that identify a person or an exact moment: none may reach the public cluster.

    User ids, event ids (both carry the session id) and exact event times. The session ids of
    this slice are 1-3 digit numbers: below the audit's 4-character minimum and found in any
    hex hash, so they are covered through the ids that embed them.
    """
    values = {e["user_id"] for e in events} | {e["event_id"] for e in events}
    # An event stamped exactly on an hour would equal its own (public) time bucket.
    values |= {str(e["timestamp"]) for e in events if e["timestamp"] % HOUR_MS}
    return sorted(values)


def test_backfilled_samples_are_the_live_ones_and_cross_only_through_the_mirror(
        kafka, env, cli, yc_events, unique, tmp_path) -> None:
    worker = WorkerProcess(env, tmp_path / "w").start()
    since = int(time.time() * 1000) - 1000
    try:
        with EventProducer(kafka.private, env["STREAMREC_EVENTS_TOPIC"]) as producer:
            for event in yc_events:
                producer.send(event)
        until = int(time.time() * 1000) + 1
        deadline = time.monotonic() + 90
        while len(live := samples_of(kafka, env["STREAMREC_SAMPLES_TOPIC"])) < len(yc_events):
            assert time.monotonic() < deadline, worker.log()
            time.sleep(1)
    finally:
        worker.stop()
    assert len(live) == len(yc_events)

    samples = unique("backfill-samples")
    result = backfill(cli, env, samples, "--since", str(since), "--until", str(until),
                      "--rate", "0")
    assert result.returncode == 0, result.stderr
    assert f"backfilled {len(yc_events):,} samples from {len(yc_events):,} events" \
        in result.stderr
    backfilled = samples_of(kafka, samples)
    # The very records the live worker sent: same fields, same key, same partition.
    assert sorted(backfilled, key=_by_id) == sorted(live, key=_by_id)

    public = unique("train")
    mirror = subprocess.run(
        [*cli, "mirror", "--once", "--source", samples, "--target", public,
         "--progress-topic", f"_progress-{public}"], capture_output=True, text=True,
        env=dict(env, STREAMREC_MIRROR_ALLOWLIST=json.dumps([samples])), timeout=120)
    assert mirror.returncode == 0, mirror.stderr
    assert f"mirrored {len(yc_events)} sample(s)" in mirror.stdout

    planted = canaries(yc_events)
    (tmp_path / "canaries.txt").write_text("\n".join(planted) + "\n")
    (tmp_path / "models").mkdir()
    audit = subprocess.run(
        [*cli, "audit", "public", "--canaries", str(tmp_path / "canaries.txt"), "--topics",
         public, "--artifacts", str(tmp_path / "models")], env=env, capture_output=True,
        text=True, timeout=120)
    assert audit.returncode == 0, audit.stdout
    assert f"1 topic(s), 4 partition(s), {len(yc_events)} record(s)" in audit.stdout
    # The canaries are real: the same audit finds every one in the private events topic.
    private = audit_cluster(kafka.private, Detector(planted), [env["STREAMREC_EVENTS_TOPIC"]])
    found = {f.kind.split()[1].lstrip("#") for f in private.findings if "canary" in f.kind}
    assert found == {str(i) for i in range(1, len(planted) + 1)}

    again = backfill(cli, env, samples, "--since", str(since), "--until", str(until))
    assert again.returncode == 0, again.stderr
    twice = samples_of(kafka, samples)
    assert Counter(s["sample_id"] for _p, _k, s in twice) == Counter(
        {s["sample_id"]: 2 for _p, _k, s in live})
    assert {json.dumps(s, sort_keys=True) for _p, _k, s in twice} == {
        json.dumps(s, sort_keys=True) for _p, _k, s in live}


def _by_id(sample: tuple[int, bytes, dict]) -> str:
    return sample[2]["sample_id"]


def test_a_dry_run_shows_the_range_and_sends_nothing(kafka, env, cli, yc_events, unique,
                                                     tmp_path: Path) -> None:
    with EventProducer(kafka.private, env["STREAMREC_EVENTS_TOPIC"]) as producer:
        for event in yc_events[:50]:
            producer.send(event)
    samples = unique("never")
    result = backfill(cli, env, samples, "--since", "-1h", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout and " 50 " in result.stdout
    assert "50 records at up to 20,000 events/s" in result.stdout
    assert partition_count(kafka.private, samples) is None
