"""The learning loop with its model store in an S3-compatible bucket, on the real clusters.

Trainer (public side) → artifacts in s3://bucket/models/<version>/ → signed releases → a second
trainer resumes from the newest release (downloaded) → model sync (private side) downloads,
verifies and serves them.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from connectors.kafka.clients import producer_config
from connectors.kafka.topics import TopicSpec, ensure_topics
from connectors.privacy.anonymizer import Anonymizer
from connectors.releases.records import read_releases
from connectors.releases.signing import generate_keypair
from connectors.releases.store import S3Options, S3Store, s3_client
from connectors.releases.sync import ModelSync, SyncConfig, SyncStats
from connectors.training.loop import Trainer, TrainerConfig
from model.config import ModelConfig, TrainConfig
from schemas import default_codec

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TINY = ModelConfig(n_items=1, max_len=20, dim=16, n_layers=1, n_heads=1, dropout=0.1,
                   n_query_buckets=4096, top_k=100)


def _produce_clicks(bootstrap: str, topic: str) -> None:
    """200 anonymised sessions of 5 clicks over 30 items, keyed by pseudonym."""
    anonymizer = Anonymizer(b"s3-store-test", 1, 4096, 3_600_000, 1.0)
    codec = default_codec()
    producer = Producer(producer_config(bootstrap))
    for u in range(200):
        for t in range(5):
            sample = anonymizer.anonymize(
                {"event_id": f"e{u}-{t}", "user_id": f"u{u}", "type": "click",
                 "item_id": f"i{(u + t) % 30}", "timestamp": 1_700_000_000_000 + t}, t)
            assert sample is not None  # sample rate 1: every user's events are kept
            producer.produce(topic, codec.write(sample),
                             sample.pseudonym.encode())
            producer.poll(0)
    assert producer.flush(60) == 0


def test_releases_go_through_the_bucket_and_a_restart_resumes_from_it(
        kafka, s3, bucket_factory, tmp_path) -> None:
    generate_keypair(tmp_path / "trainer.key", tmp_path / "trainer.pub")
    topic, releases_topic = f"train-s3-{time.time_ns()}", f"rel-s3-{time.time_ns()}"
    ensure_topics(kafka.public, [TopicSpec(topic, 4)])
    _produce_clicks(kafka.public, topic)
    options = S3Options(s3.endpoint, "us-east-1")
    location = f"s3://{bucket_factory()}/models"

    def trainer(name: str) -> Trainer:
        store = S3Store(location, tmp_path / name / "staging", s3_client(options), s3.endpoint)
        return Trainer(TrainerConfig(kafka.public, topic, releases_topic, store,
                                     tmp_path / "trainer.key", TINY,
                                     TrainConfig(epochs=1, lr=5e-3, threads=2),
                                     window_clicks=400, window_seconds=2.0, min_clicks=20,
                                     tolerance=1.0))

    first = trainer("first").run(max_windows=1, idle_exit_s=10)
    second = trainer("second").run(max_windows=1, idle_exit_s=10)  # a fresh machine's disk
    releases = read_releases(kafka.public, releases_topic)
    assert [r.version for r in releases] == [*first.released, *second.released]
    assert len(releases) == 2 and releases[1].parent_version == releases[0].version
    assert [r.artifact_uri for r in releases] == [f"{location}/{r.version}/" for r in releases]
    assert releases[1].metrics["generation"] == 2  # warm-started from the downloaded release
    staged = tmp_path / "second" / "staging"
    assert sorted(p.name for p in staged.iterdir()) == [releases[1].version]  # download dropped

    sync = ModelSync(SyncConfig(kafka.public, releases_topic, tmp_path / "models-private",
                                tmp_path / "trainer.pub", device="cpu", s3=options))
    stats = SyncStats()
    sync.handle(releases, stats)
    assert stats.accepted == [r.version for r in releases] and not stats.refused
    assert sync.models.current() == releases[1].version
