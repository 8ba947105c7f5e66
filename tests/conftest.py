"""Shared fixtures: the real local Kafka clusters (started once per session) and fresh names.

Integration tests get the clusters through ``kafka``. They are started with the same code users
run (``streamrec broker start``) on test ports in a temporary directory, and stopped at the end.
Set STREAMREC_TEST_PRIVATE_BOOTSTRAP and STREAMREC_TEST_PUBLIC_BOOTSTRAP to use running clusters
instead. A broker that cannot start fails the tests; nothing is skipped.

Object-store tests get an S3-compatible HTTP service through ``s3``: moto's server on a loopback
port, or the service at STREAMREC_TEST_S3_ENDPOINT (e.g. a MinIO, with its credentials in
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); ``bucket_factory`` gives each test fresh buckets.
"""

from __future__ import annotations

import logging
import os
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.kafka.topics import TopicSpec, ensure_topics
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


@dataclass(frozen=True)
class S3Service:
    """An S3-compatible HTTP service for the tests."""

    endpoint: str
    is_moto: bool  # our own moto server, whose credential checks are off unless enforced

    @contextmanager
    def credentials_enforced(self) -> Iterator[None]:
        """Within: requests with unknown credentials are refused (a real service always does)."""
        if not self.is_moto:
            yield
            return
        self._moto_auth(b"0")  # moto checks credentials after this many requests
        try:
            yield
        finally:
            self._moto_auth(b"inf")

    def _moto_auth(self, after: bytes) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=after,
                                         headers={"Content-Type": "text/plain"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Service]:
    """moto's S3 server on a loopback port for this session, or STREAMREC_TEST_S3_ENDPOINT."""
    given = os.environ.get("STREAMREC_TEST_S3_ENDPOINT")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask a cloud metadata service
        if given:
            yield S3Service(given.rstrip("/"), is_moto=False)
            return
        # moto accepts any credentials; these keep the developer's own AWS setup out of it.
        env.setenv("AWS_ACCESS_KEY_ID", "streamrec-test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "streamrec-test")
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.delenv(name, raising=False)
        env.setenv("AWS_CONFIG_FILE", os.devnull)
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield S3Service(f"http://{host}:{port}", is_moto=True)
        finally:
            server.stop()


@pytest.fixture
def bucket_factory(s3: S3Service, unique) -> Iterator[Callable[[], str]]:
    """Create fresh buckets on ``s3``; they are emptied and removed after the test."""
    from connectors.releases.store import S3Options, s3_client

    client = s3_client(S3Options(s3.endpoint, "us-east-1"))
    made: list[str] = []

    def make() -> str:
        name = unique("streamrec-test")
        client.create_bucket(Bucket=name)
        made.append(name)
        return name

    yield make
    for name in made:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=obj["Key"])
        client.delete_bucket(Bucket=name)
