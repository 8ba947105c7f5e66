"""Fixtures of the worker's integration tests: real YooChoose sessions and a model trained on
them with the real ``streamrec train`` (once per test session)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.datasets.readers import read_events

USERS = 300


@pytest.fixture(scope="session")
def yc_events(datasets) -> list[dict]:
    """The first YooChoose sessions (users) with every click, in time order."""
    path = datasets / "yoochoose-rsc15-100k" / "yoochoose-clicks-100k_train_full.txt"
    return list(read_events("yoochoose", path, limit_users=USERS))


@pytest.fixture(scope="session")
def tiny_model(yc_events, tmp_path_factory) -> Path:
    """A small SASRec trained on those sessions with the real `streamrec train`."""
    root = tmp_path_factory.mktemp("model")
    data = root / "events.jsonl"
    data.write_text("".join(json.dumps(e) + "\n" for e in yc_events))
    out = root / "artifact"
    result = subprocess.run(
        [sys.executable, "-m", "streamrec", "train", "--dataset", str(data), "--format",
         "events", "--out", str(out), "--dim", "16", "--layers", "1", "--heads", "1",
         "--epochs", "2", "--max-len", "20", "--seed", "3"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out




@pytest.fixture
def env(kafka, unique) -> dict[str, str]:
    """Settings for a worker of its own: fresh topics (samples too) and consumer group."""
    return kafka.env(
        STREAMREC_EVENTS_TOPIC=unique("events"), STREAMREC_RECOMMENDATIONS_TOPIC=unique("recs"),
        STREAMREC_DLQ_TOPIC=unique("dlq"), STREAMREC_SAMPLES_TOPIC=unique("samples"),
        STREAMREC_APP_ID=unique("app"), STREAMREC_BATCH_MAX_MS="10", STREAMREC_TOP_K="10",
        STREAMREC_LOG_LEVEL="warning")
