"""The demo's guard against worker state left over from a cluster whose topics are gone."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from connectors.kafka.clients import producer_config
from connectors.kafka.topics import TopicSpec, ensure_topics
from streamrec import demo
from streamrec.settings import Settings

pytestmark = pytest.mark.integration


def _settings(kafka, tmp_path: Path, app_id: str) -> Settings:
    return Settings(private_bootstrap=kafka.private, data_dir=tmp_path, app_id=app_id,
                    web_port=7123)


def _plant_state(settings: Settings) -> Path:
    state = settings.worker_dir
    (state / "tables").mkdir(parents=True)
    (state / "tables" / "CURRENT").write_text("rocksdb")
    return state


def test_state_without_its_changelog_is_removed(kafka, tmp_path: Path, unique) -> None:
    settings = _settings(kafka, tmp_path, unique("demo-app"))
    state = _plant_state(settings)
    assert demo.drop_stale_worker_state(settings) == state  # the changelog topic does not exist
    assert not state.exists()
    assert demo.drop_stale_worker_state(settings) is None  # nothing left to remove


def test_empty_changelog_also_means_stale_state(kafka, tmp_path: Path, unique) -> None:
    settings = _settings(kafka, tmp_path, unique("demo-app"))
    ensure_topics(kafka.private, [TopicSpec(f"{settings.app_id}-user-state-changelog", 4)])
    state = _plant_state(settings)
    assert demo.drop_stale_worker_state(settings) == state and not state.exists()


def test_state_whose_changelog_holds_records_is_kept(kafka, tmp_path: Path, unique) -> None:
    settings = _settings(kafka, tmp_path, unique("demo-app"))
    topic = f"{settings.app_id}-user-state-changelog"
    ensure_topics(kafka.private, [TopicSpec(topic, 4)])
    producer = Producer(producer_config(kafka.private))
    producer.produce(topic, b"{}", b"user-1", partition=2)
    assert producer.flush(10) == 0
    state = _plant_state(settings)
    assert demo.drop_stale_worker_state(settings) is None
    assert (state / "tables" / "CURRENT").read_text() == "rocksdb"


def test_log_tail_prefers_error_lines(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("starting\n[ERROR] Crashed reason=ConsistencyError(...)\nmore noise\n")
    assert demo.log_tail(log) == "[ERROR] Crashed reason=ConsistencyError(...)"
    assert demo.log_tail(tmp_path / "missing.log") == ""
