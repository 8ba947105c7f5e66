"""The local broker lifecycle, with real JVMs: start, idempotent start, stop, clear errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from streamrec.broker import BrokerError, KafkaDistribution, LocalCluster, start_clusters
from streamrec.settings import Settings

pytestmark = pytest.mark.integration


def _env_for(tmp_path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(STREAMREC_DATA_DIR=str(tmp_path), STREAMREC_PRIVATE_PORT=str(port),
               STREAMREC_PUBLIC_PORT=str(port + 10))
    return env


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "streamrec", *args], env=env,
                          capture_output=True, text=True, timeout=180)


def _java_pids_for(tmp_path) -> list[str]:
    out = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    return out.split()


@pytest.mark.slow
def test_start_twice_status_and_stop_leave_nothing_behind(tmp_path) -> None:
    env = _env_for(tmp_path, 39192)
    first = _cli(env, "broker", "start")
    assert first.returncode == 0, first.stderr
    assert "started" in first.stdout and "127.0.0.1:39192" in first.stdout
    second = _cli(env, "broker", "start")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already running") == 2
    status = _cli(env, "broker", "status")
    assert status.returncode == 0 and status.stdout.count("running pid=") == 2
    assert len(_java_pids_for(tmp_path)) == 2
    stop = _cli(env, "broker", "stop")
    assert stop.returncode == 0 and stop.stdout.count("stopped") == 2
    assert _java_pids_for(tmp_path) == []
    assert _cli(env, "broker", "status").returncode == 3


def test_a_taken_port_is_reported_with_the_setting_to_change(tmp_path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        cluster = LocalCluster("private", port, tmp_path / "p")
        dist = KafkaDistribution(Settings().cache_dir, Settings().kafka_version)
        with pytest.raises(BrokerError, match=f"port {port}.*STREAMREC_PRIVATE_PORT"):
            start_clusters([cluster], dist, timeout_s=30)
    assert cluster.read_pid() is None


def test_missing_java_is_a_clear_error(tmp_path) -> None:
    env = _env_for(tmp_path, 39292) | {"PATH": "/nonexistent"}
    result = subprocess.run([sys.executable, "-m", "streamrec", "broker", "start"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "'java' is not on PATH" in result.stderr and "Java 17" in result.stderr


def test_missing_maven_is_a_clear_error(tmp_path, monkeypatch) -> None:
    only_java = tmp_path / "bin"
    only_java.mkdir()
    (only_java / "java").symlink_to(subprocess.check_output(["which", "java"], text=True).strip())
    monkeypatch.setenv("PATH", str(only_java))
    dist = KafkaDistribution(tmp_path / "cache", "4.4.0")
    with pytest.raises(BrokerError, match="'mvn' is not on PATH"):
        dist.ensure(quiet=True)
    assert not dist.is_complete()
