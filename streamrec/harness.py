"""Start, query and stop real ``streamrec worker`` processes for the integration tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

# One sample of a Prometheus exposition: its labels and its value.
Sample = tuple[dict[str, str], float]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def samples(exposition: str, name: str) -> list[Sample]:
    """Every sample called ``name`` (e.g. ``x_total``, ``x_bucket``) in a Prometheus text."""
    return [(dict(s.labels), s.value) for family in text_string_to_metric_families(exposition)
            for s in family.samples if s.name == name]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    """GET a JSON document; returns (status, body)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        body = err.read() or b"{}"
        try:
            return err.code, json.loads(body)
        except ValueError:  # not JSON (e.g. the web server's own error page)
            return err.code, {"error": body.decode(errors="replace")[:500]}


@dataclass
class WorkerProcess:
    """One worker subprocess with its own web port and data directory."""

    env: dict[str, str]
    data_dir: Path
    model: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    cpus: frozenset[int] | None = None  # cores the worker may run on (default: this process's)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90.0) -> WorkerProcess:
        """Start the worker and wait until its web server answers."""
        env = dict(self.env, STREAMREC_DATA_DIR=str(self.data_dir))
        cmd = [sys.executable, "-m", "streamrec", "worker", "--web-port", str(self.port)]
        if self.model:
            cmd += ["--model", str(self.model)]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / f"worker-{self.port}.log", "ab")  # noqa: SIM115
        mine = os.sched_getaffinity(0)
        if self.cpus:  # a child, and every thread it starts, inherits this thread's affinity
            os.sched_setaffinity(0, self.cpus)
        try:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            os.sched_setaffinity(0, mine)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if http_get(self.url + "/model", timeout=1)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"worker did not answer within {timeout_s} s:\n{self.log()}")

    def metrics_text(self) -> str:
        """The worker's Prometheus exposition."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            return resp.read().decode()

    def samples(self, name: str) -> list[Sample]:
        """The worker's samples called ``name``, with their labels."""
        return samples(self.metrics_text(), name)

    def metric(self, name: str) -> float:
        """The value of the samples called ``name``, summed over their labels."""
        return sum(value for _, value in self.samples(name))

    def kill(self) -> None:
        """kill -9: no shutdown, no flush, no commit."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), then kill if it hangs."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        path = self.data_dir / f"worker-{self.port}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""
