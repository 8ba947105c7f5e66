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


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    """GET a JSON document; returns (status, body)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@dataclass
class WorkerProcess:
    """One worker subprocess with its own web port and data directory."""

    env: dict[str, str]
    data_dir: Path
    model: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

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
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
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

    def metrics_lines(self) -> list[str]:
        """The worker's Prometheus exposition, line by line."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            return resp.read().decode().splitlines()

    def metric(self, name: str) -> float:
        """The value of one Prometheus metric line (summed over labels)."""
        return sum(float(line.rsplit(" ", 1)[1]) for line in self.metrics_lines()
                   if line.startswith(name + " ") or line.startswith(name + "{"))

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
