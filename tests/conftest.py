"""Shared fixtures: the real local Kafka clusters (started once per session) and fresh names.

Integration tests get the clusters through ``kafka``. They are started with the same code users
run (``streamrec broker start``) on test ports in a temporary directory, and stopped at the end.
Set STREAMREC_TEST_PRIVATE_BOOTSTRAP and STREAMREC_TEST_PUBLIC_BOOTSTRAP to use running clusters
instead. A broker that cannot start fails the tests; nothing is skipped.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.topics import TopicSpec, ensure_topics
from streamrec.broker import KafkaDistribution, LocalCluster, start_clusters
from streamrec.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
TEST_PRIVATE_PORT = int(os.environ.get("STREAMREC_TEST_PRIVATE_PORT", "39092"))
TEST_PUBLIC_PORT = int(os.environ.get("STREAMREC_TEST_PUBLIC_PORT", "49092"))


@dataclass(frozen=True)
class Clusters:
    """Bootstrap addresses of the two test clusters."""

    private: str
    public: str

    def env(self, **extra: str) -> dict[str, str]:
        """An environment for running the CLI against these clusters."""
        env = dict(os.environ)
        env.update(STREAMREC_PRIVATE_BOOTSTRAP=self.private,
                   STREAMREC_PUBLIC_BOOTSTRAP=self.public, **extra)
        return env


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    """The private and public clusters, started for this test session unless given."""
    given_private = os.environ.get("STREAMREC_TEST_PRIVATE_BOOTSTRAP")
    given_public = os.environ.get("STREAMREC_TEST_PUBLIC_BOOTSTRAP")
    if given_private and given_public:
        yield Clusters(given_private, given_public)
        return
    root = tmp_path_factory.mktemp("kafka")
    settings = Settings()
    clusters = [
        LocalCluster("private", TEST_PRIVATE_PORT, root / "private", partitions=4),
        LocalCluster("public", TEST_PUBLIC_PORT, root / "public", partitions=4),
    ]
    dist = KafkaDistribution(settings.cache_dir, settings.kafka_version)
    try:
        start_clusters(clusters, dist, timeout_s=120)
        yield Clusters(clusters[0].bootstrap, clusters[1].bootstrap)
    finally:
        for cluster in clusters:
            cluster.stop()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Fresh names for topics and consumer groups, so tests never see each other's data."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topic_factory(kafka: Clusters, unique) -> Callable[..., str]:
    """Create a fresh topic on a cluster and return its name."""

    def make(prefix: str = "t", partitions: int = 4, cluster: str = "private") -> str:
        name = unique(prefix)
        ensure_topics(getattr(kafka, cluster), [TopicSpec(name, partitions)])
        return name

    return make


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The shared real datasets beside the checkout; their absence is a failure, not a skip."""
    if not (DATASETS / "README.md").exists():
        pytest.fail(f"real datasets not found at {DATASETS}: the repo expects ../shared/datasets")
    return DATASETS


@pytest.fixture(scope="session")
def cli() -> list[str]:
    """The command prefix that runs the streamrec CLI of this checkout."""
    return [sys.executable, "-m", "streamrec"]
