"""docker-compose.yml describes the same two clusters as the local default."""

from __future__ import annotations

from pathlib import Path

import yaml

from streamrec.settings import Settings

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def test_compose_pins_the_same_kafka_and_ports_as_the_local_default() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    settings = Settings()
    expected = {"kafka-private": settings.private_port, "kafka-public": settings.public_port}
    assert set(expected) <= set(services)
    for name, port in expected.items():
        service = services[name]
        assert service["image"] == f"apache/kafka:{settings.kafka_version}"
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
        env = service["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
        assert f"HOST://127.0.0.1:{port}" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert env["KAFKA_NUM_PARTITIONS"] == settings.partitions
        assert env["KAFKA_LOG_DIRS"] == service["volumes"][0].split(":", 1)[1]
