"""Fixtures of the model tests: real data slices, tiny trained artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_testkit import train_tiny, write_events

from model.artifact import Artifact

DATASETS = Path(__file__).resolve().parents[2] / "../shared/datasets"


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The shared real datasets; a missing folder fails the tests with the fix."""
    if not (DATASETS / "amazon-beauty-s3rec" / "Beauty.txt").is_file():
        pytest.fail(
            f"real datasets not found at {DATASETS.resolve()}: the checkout's parent "
            "folder must hold shared/datasets (see shared/datasets/README.md)"
        )
    return DATASETS


@pytest.fixture(scope="session")
def beauty_slice(datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 400 users of Amazon Beauty (S3-Rec version)."""
    lines = (datasets / "amazon-beauty-s3rec" / "Beauty.txt").read_text().splitlines()[:400]
    path = tmp_path_factory.mktemp("data") / "beauty400.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def beauty_artifact(beauty_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """A tiny model trained on real Beauty sequences."""
    return train_tiny(beauty_slice, "s3rec", tmp_path_factory.mktemp("art") / "beauty")


@pytest.fixture(scope="session")
def events_artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """A tiny model trained on click and search events."""
    events = write_events(tmp_path_factory.mktemp("data") / "events.jsonl")
    return train_tiny(events, "events", tmp_path_factory.mktemp("art") / "events", seed=2)
