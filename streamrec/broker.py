"""Local Apache Kafka clusters in KRaft mode: fetch the jars with Maven, format, start, wait, stop.

Two single-node clusters run on loopback, "private" and "public", each in its own directory under
``<data_dir>/kafka/<name>/`` with its config, data, log and pid file. ``stop`` ends exactly the
process recorded in the pid file, after checking that it is still our broker.
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from streamrec.errors import StreamrecError

SCALA_VERSION = "2.13"
# Kafka's own pom leaves the logging backend to the application: we pin log4j2 behind slf4j 2.
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.17"


class BrokerError(StreamrecError):
    """A local broker could not be fetched, started or stopped."""


def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerError(f"'{name}' is not on PATH. {hint}")
    return path


def check_java() -> str:
    """Return the java executable, or fail unless Java 17 or newer is installed."""
    java = _require_tool("java", "Install Java 17+ (e.g. apt-get install openjdk-17-jre).")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < 17:
        raise BrokerError(f"Kafka 4 needs Java 17 or newer; `java -version` says: {out.strip()}")
    return java


@dataclass(frozen=True)
class KafkaDistribution:
    """Kafka's broker jars and their dependencies, resolved by Maven into a cache directory."""

    cache_dir: Path
    version: str

    @property
    def home(self) -> Path:
        return self.cache_dir / f"kafka-{self.version}"

    @property
    def lib(self) -> Path:
        return self.home / "lib"

    def is_complete(self) -> bool:
        return (self.home / ".complete").exists()

    def ensure(self, quiet: bool = False) -> Path:
        """Download the jars once (under a lock, so concurrent callers wait), return the lib dir."""
        if self.is_complete():
            return self.lib
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.is_complete():
                self._download(quiet)
        return self.lib

    def _download(self, quiet: bool) -> None:
        mvn = _require_tool("mvn", "Install Apache Maven (e.g. apt-get install maven).")
        (self.home / "pom.xml").write_text(self._pom())
        if self.lib.exists():
            shutil.rmtree(self.lib)
        if not quiet:
            print(f"fetching Apache Kafka {self.version} jars with Maven into {self.lib} ...")
        cmd = [mvn, "-q", "-B", "dependency:copy-dependencies",
               f"-DoutputDirectory={self.lib}", "-DincludeScope=runtime"]
        proc = subprocess.run(cmd, cwd=self.home, capture_output=True, text=True)
        if proc.returncode != 0 or not any(self.lib.glob(f"kafka_{SCALA_VERSION}-*.jar")):
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise BrokerError(
                f"Maven could not fetch Kafka {self.version} (exit {proc.returncode}). "
                "Check that Maven Central is reachable and STREAMREC_KAFKA_VERSION names a "
                "released version.\n" + "\n".join(tail)
            )
        (self.home / ".complete").write_text(self.version)

    def _pom(self) -> str:
        deps = [
            ("org.apache.kafka", f"kafka_{SCALA_VERSION}", self.version),
            ("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J_VERSION),
            ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
            ("org.slf4j", "slf4j-api", SLF4J_VERSION),
        ]
        xml = "".join(
            f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
            f"<version>{v}</version></dependency>"
            for g, a, v in deps
        )
        return (
            '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            "<groupId>streamrec.local</groupId><artifactId>kafka-runtime</artifactId>"
            f"<version>{self.version}</version><dependencies>{xml}</dependencies></project>\n"
        )


LOG4J2_CONFIG = """\
rootLogger.level=INFO
rootLogger.appenderRef.out.ref=OUT
appender.out.type=Console
appender.out.name=OUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=INFO
logger.state.name=state.change.logger
logger.state.level=WARN
"""


def _port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def new_cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64, as Kafka writes them.

    Like Kafka's own ``Uuid.randomUuid``, never one that starts with "-": the storage tool would
    take it for an option (1 in 64 random ids), and formatting would fail.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


# Kafka's own launch script's collector settings: G1 aiming at 20-ms pauses, marking started
# early. With the heap fixed at its maximum from the start, young collections are also rarer.
JVM_GC_OPTIONS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                  "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent")


@dataclass(frozen=True)
class LocalCluster:
    """One single-node KRaft cluster (broker and controller in one JVM) on loopback."""

    name: str
    port: int
    root: Path
    partitions: int = 4
    heap: str = "512m"

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.root / "server.properties"

    @property
    def pid_path(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log_path(self) -> Path:
        return self.root / "broker.log"

    def server_properties(self) -> str:
        """The broker's configuration: one node, replication factor 1 everywhere."""
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str((self.root / "data").resolve()),
            "num.partitions": str(self.partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "8",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            # A laptop-sized broker: small segments and no time-based deletion of demo data.
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.retention.hours": "-1",
            "log.retention.bytes": str(2 * 1024**3),
        }
        return "".join(f"{k}={v}\n" for k, v in settings.items())

    def read_pid(self) -> int | None:
        """The pid of our running broker, or None (stale pid files are removed)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if self._is_our_broker(pid):
            return pid
        self.pid_path.unlink(missing_ok=True)
        return None

    def _is_our_broker(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return str(self.config_path.resolve()).encode() in cmdline

    def prepare(self, java: str, lib: Path) -> None:
        """Write the config and format the KRaft storage once."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.server_properties())
        (self.root / "log4j2.properties").write_text(LOG4J2_CONFIG)
        if (self.root / "data" / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        proc = subprocess.run(
            self._java_cmd(java, lib, "kafka.tools.StorageTool")
            + ["format", "-t", cluster_id, "-c", str(self.config_path.resolve())],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise BrokerError(f"formatting {self.name} storage failed:\n{proc.stdout}{proc.stderr}")

    def _java_cmd(self, java: str, lib: Path, main: str) -> list[str]:
        return [
            java, f"-Xmx{self.heap}", f"-Xms{self.heap}", *JVM_GC_OPTIONS,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={(self.root / 'log4j2.properties').resolve()}",
            "-cp", f"{lib.resolve()}/*", main,
        ]

    def launch(self, java: str, lib: Path) -> int:
        """Start the broker JVM in its own session and record its pid."""
        if _port_is_open(self.port) or _port_is_open(self.controller_port):
            raise BrokerError(
                f"cannot start the {self.name} cluster: port {self.port} or "
                f"{self.controller_port} on 127.0.0.1 is taken by another process. Stop it, or "
                f"choose free ports with STREAMREC_{self.name.upper()}_PORT "
                "(the controller uses that port + 1)."
            )
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                self._java_cmd(java, lib, "kafka.Kafka") + [str(self.config_path.resolve())],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_path.write_text(str(proc.pid))
        return proc.pid

    def wait_ready(self, pid: int, timeout_s: float) -> None:
        """Wait until the broker answers a metadata request; fail early if the JVM dies."""
        from confluent_kafka.admin import AdminClient

        from connectors.kafka.clients import admin_config

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                raise BrokerError(
                    f"the {self.name} broker exited during start-up; last lines of "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
            if _port_is_open(self.port):
                admin = AdminClient(admin_config(self.bootstrap, log_level=0))
                try:
                    meta = admin.list_topics(timeout=2)
                    if meta.brokers:
                        return
                except Exception:  # noqa: BLE001 - not ready yet; retried until the deadline
                    pass
            time.sleep(0.3)
        raise BrokerError(
            f"the {self.name} broker did not become ready within {timeout_s:.0f} s "
            f"(raise STREAMREC_BROKER_START_TIMEOUT_S on a slow machine); log tail:\n"
            f"{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 30.0) -> bool:
        """End our broker (SIGTERM, then SIGKILL after the timeout); True if one was running."""
        pid = self.read_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.1)
        self.pid_path.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _pid_alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    try:
        return state.read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def start_clusters(
    clusters: Iterable[LocalCluster], dist: KafkaDistribution, timeout_s: float
) -> dict[str, str]:
    """Start every cluster not already running (in parallel) and wait until all are ready."""
    java = check_java()
    lib = dist.ensure()
    launched: list[tuple[LocalCluster, int]] = []
    for cluster in clusters:
        if cluster.read_pid() is None:
            cluster.prepare(java, lib)
            launched.append((cluster, cluster.launch(java, lib)))
    try:
        for cluster, pid in launched:
            cluster.wait_ready(pid, timeout_s)
    except BrokerError:
        for cluster, _ in launched:
            cluster.stop(timeout_s=10)
        raise
    return {c.name: c.bootstrap for c, _ in launched}
