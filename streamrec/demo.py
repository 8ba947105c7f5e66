"""The live demo: local clusters, a trained model, a worker, real events streaming, a live view.

Everything it starts it stops again on Ctrl-C (or after ``--duration`` seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer
from rich.table import Table

from connectors.datasets.readers import read_events
from connectors.datasets.synthetic import SyntheticConfig, generate_events
from connectors.kafka.clients import consumer_config
from connectors.releases.registry import PrivateModels
from connectors.releases.signing import generate_keypair
from connectors.replay.ranges import partition_count, watermarks
from connectors.sdk.pacing import Pacer
from connectors.sdk.producer import EventProducer
from connectors.sdk.subscriber import Subscriber
from streamrec.errors import StreamrecError
from streamrec.settings import Settings

YOOCHOOSE = "yoochoose-rsc15-100k"


def find_datasets(start: Path) -> Path | None:
    """The shared datasets folder beside the checkout (or None)."""
    for base in (start, *start.parents):
        candidate = base.parent / "shared" / "datasets"
        if (candidate / YOOCHOOSE).is_dir():
            return candidate
    return None


def demo_data(data_root: Path | None, work: Path) -> tuple[Path, list[dict], str]:
    """Training events (a JSONL file) and the events to stream, from YooChoose or synthetic."""
    work.mkdir(parents=True, exist_ok=True)
    if data_root is not None:
        folder = data_root / YOOCHOOSE
        train = list(read_events("yoochoose", folder / "yoochoose-clicks-100k_train_full.txt"))
        live = list(read_events("yoochoose", folder / "yoochoose-clicks-100k_test.txt"))
        source = f"YooChoose (RecSys 2015): train {len(train):,} clicks, stream {len(live):,}"
    else:
        events = list(generate_events(SyntheticConfig(users=4000, items=2000, events=60_000)))
        split = int(len(events) * 0.8)
        train, live = events[:split], events[split:]
        source = f"synthetic shop: train {len(train):,} events, stream {len(live):,}"
    path = work / "train-events.jsonl"
    if not path.exists():
        path.write_text("".join(json.dumps(e) + "\n" for e in train))
    return path, live, source


def train_model(events: Path, out: Path, log: Path) -> Path:
    """Train the demo model once (about a minute on 2 CPU cores); reuse it afterwards."""
    if (out / "metadata.json").exists():
        return out
    print(f"training the demo model (log: {log}) ...", flush=True)
    cmd = [sys.executable, "-m", "streamrec", "train", "--dataset", str(events), "--format",
           "events", "--out", str(out), "--preset", "demo", "--overwrite"]
    with open(log, "wb") as sink:
        result = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise StreamrecError(f"training the demo model failed; see {log}")
    return out


@dataclass
class LiveStats:
    """What the live view shows, updated by the producer and subscriber threads."""

    produced: int = 0
    recommendations: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=5000))
    hits: int = 0
    judged: int = 0
    last_recs: dict[str, list[str]] = field(default_factory=dict)
    recent: deque = field(default_factory=lambda: deque(maxlen=5))
    model_version: str = "-"
    versions: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_event(self, event: dict) -> None:
        """Judge the previous recommendation against the user's next click."""
        with self.lock:
            self.produced += 1
            previous = self.last_recs.get(event["user_id"])
            if previous is not None and event["type"] == "click":
                self.judged += 1
                self.hits += event["item_id"] in previous

    def on_recommendation(self, rec: dict) -> None:
        with self.lock:
            self.recommendations += 1
            self.latencies_ms.append(rec["produced_at"] - rec["cause_ingest_time"])
            self.last_recs[rec["user_id"]] = [i["item_id"] for i in rec["items"]]
            self.recent.append(rec)
            self.model_version = rec["model_version"]
            if rec["strategy"] == "model" and rec["model_version"] not in self.versions:
                self.versions.append(rec["model_version"])

    def percentile(self, q: float) -> float:
        with self.lock:
            values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def bootstrap_private_model(settings: Settings, artifact: Path) -> Path:
    """Make the privately trained demo model the private side's ``current``; return the link.

    It was trained in the private cloud, so it needs no trainer signature; the releases that
    follow come from the public trainer and are verified by the model sync.
    """
    models = PrivateModels(settings.data_dir / "models-private")
    metadata = json.loads((artifact / "metadata.json").read_text())
    version = metadata["version"]
    if not models.path_of(version).exists():
        shutil.copytree(artifact, models.path_of(version))
        models.record_accepted(version, {"version": version, "parent_version": None,
                                         "metrics": release_metrics(metadata),
                                         "origin": "private demo training"}, {})
    if models.current() is None:
        models.point_current(version, "demo bootstrap")
    return models.current_link


def release_metrics(metadata: dict) -> dict:
    """A trained artifact's figures in a release's terms (its validation split, its items)."""
    val = (metadata.get("metrics") or {}).get("val") or {}
    return {"hr@10": val.get("HR@10"), "ndcg@10": val.get("NDCG@10"),
            "items": max(0, len(metadata.get("item_ids", [])) - 1)}  # [0] is padding


def ensure_trainer_keys(settings: Settings) -> None:
    """The trainer's signing key pair (made once; the private side keeps only the public key)."""
    if not settings.signing_key_path.exists():
        generate_keypair(settings.signing_key_path, settings.verify_key_path)


LOGS = {"worker": "worker.log", "mirror": "mirror.log", "trainer": "trainer.log",
        "model sync": "sync.log"}  # in the demo's work directory


def drop_stale_worker_state(settings: Settings) -> Path | None:
    """Remove the demo worker's local tables when the cluster holds none of their changelog.

    Local state records how far it read its changelog; on a cluster whose storage was deleted
    Faust refuses to start ("persisted offset ... is higher than the last offset"). The demo
    owns this state, so it starts over instead. Returns the removed directory, if any.
    """
    state = settings.worker_dir
    if not state.exists():
        return None
    topic = f"{settings.app_id}-user-state-changelog"
    partitions = partition_count(settings.private_servers, topic) or 0
    consumer = Consumer(consumer_config(settings.private_servers, "streamrec-demo-probe"))
    try:
        kept = sum(high for _, high in watermarks(consumer, topic, partitions).values())
    finally:
        consumer.close()
    if kept:
        return None
    shutil.rmtree(state)
    return state


def log_tail(log: Path, lines: int = 12) -> str:
    """The last lines of a process log that say something (errors first if there are any)."""
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [line for line in text if "ERROR" in line or "CRITICAL" in line or "Error" in line]
    return "\n".join((errors or text)[-lines:])


def start(args: list[str], log: Path) -> subprocess.Popen:
    """``streamrec ARGS`` in its own process group, so stopping the demo stops it too."""
    return run_logged([sys.executable, "-m", "streamrec", *args], log)


def run_logged(cmd: list[str], log: Path) -> subprocess.Popen:
    """``cmd`` in its own process group, its output appended to ``log``."""
    sink = open(log, "ab")  # noqa: SIM115 - the child owns it until it exits
    return subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ))


def start_loop(settings: Settings, model: Path, work: Path) -> dict[str, subprocess.Popen]:
    """Worker, mirror, incremental trainer and model sync: the whole hybrid-cloud loop."""
    ensure_trainer_keys(settings)
    current = bootstrap_private_model(settings, model)
    return {
        "worker": start(["worker", "--model", str(current)], work / LOGS["worker"]),
        "mirror": start(["mirror"], work / LOGS["mirror"]),
        "trainer": start(["train", "--follow", "--init-from", str(model), "--window-seconds",
                          "30", "--window-clicks", "4000", "--epochs", "2"],
                         work / LOGS["trainer"]),
        "model sync": start(["models", "sync"], work / LOGS["model sync"]),
    }


def restarts(proc: subprocess.Popen) -> bool:
    """Whether the demo starts an exited process again: a worker whose watchdog found it
    stalled exits with EXIT_STALLED for its supervisor to restart it; any other exit ends
    the demo with the process's log."""
    from streams.watchdog import EXIT_STALLED

    return proc.poll() == EXIT_STALLED


def stop_process(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    """SIGTERM the process group, SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stream_events(settings: Settings, events: list[dict], rate: float, stats: LiveStats,
                  stop: threading.Event) -> None:
    """Produce the live events at ``rate`` per second until done or stopped."""
    pace = Pacer(rate)
    with EventProducer(settings.private_servers, settings.events_topic) as producer:
        for event in events:
            if stop.is_set():
                break
            pace()
            producer.send(event)
            stats.on_event(event)


def follow_recommendations(settings: Settings, stats: LiveStats, stop: threading.Event) -> None:
    """Feed every new recommendation into the live statistics until stopped."""
    for rec in Subscriber(settings.private_servers, settings.recommendations_topic,
                          should_stop=stop.is_set):
        stats.on_recommendation(rec.value)


def render(stats: LiveStats, source: str, processes: dict[str, bool]) -> Table:
    """The live view: rates, latency percentiles, live quality, a few users' latest items."""
    elapsed = max(1e-9, time.monotonic() - stats.started)
    table = Table(title="streamrec live demo — Ctrl-C stops everything", show_header=False,
                  expand=False)
    table.add_column(style="bold cyan")
    table.add_column()
    quality = f"{stats.hits / stats.judged:.1%} of {stats.judged:,}" if stats.judged else "-"
    rows = [
        ("data", source),
        ("processes", "  ".join(f"{name}: {'up' if up else '[red]down[/]'}"
                                for name, up in processes.items())),
        ("model", f"{stats.model_version}  (versions seen: {len(stats.versions)})"),
        ("events produced", f"{stats.produced:,}  ({stats.produced / elapsed:,.0f}/s)"),
        ("recommendations", f"{stats.recommendations:,}  "
                            f"({stats.recommendations / elapsed:,.0f}/s)"),
        ("event→rec latency", f"p50 {stats.percentile(0.5):.0f} ms · p95 "
                              f"{stats.percentile(0.95):.0f} ms · p99 "
                              f"{stats.percentile(0.99):.0f} ms"),
        ("live quality", f"next click was in the previous top-K: {quality}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    with stats.lock:
        recent = list(stats.recent)
    for rec in recent:
        items = ", ".join(i["item_id"] for i in rec["items"][:5])
        table.add_row(f"user {rec['user_id']}", f"{items} …  [dim]({rec['strategy']})")
    return table
