"""The benchmarks' shared workload: real events, a model, fresh topics, load and its latencies.

Each pipeline benchmark (``bench_pipeline``, ``bench_swap``, ``bench_replay_live``,
``bench_failover``, ``transit_floor``) drives workers with the same data and measures the same
way: Amazon Beauty events with users interleaved, a model trained once with the demo preset,
fresh topics and a fresh consumer group per run, a paced producer, and event→recommendation
latency at a subscriber.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import psutil

from connectors.datasets.readers import read_events
from connectors.kafka.topics import TopicSpec, ensure_topics
from connectors.sdk.pacing import Pacer
from connectors.sdk.producer import EventProducer
from connectors.sdk.subscriber import Subscriber
from streamrec.settings import Settings

REPO = Path(__file__).resolve().parents[1]
BEAUTY = REPO.parent / "shared" / "datasets" / "amazon-beauty-s3rec" / "Beauty.txt"


def interleaved_events(limit: int, seed: int = 7) -> list[dict]:
    """Beauty events with users interleaved round-robin (each user's order kept)."""
    per_user: dict[str, list[dict]] = defaultdict(list)
    for event in read_events("s3rec", BEAUTY):
        event.pop("timestamp", None)
        per_user[event["user_id"]].append(event)
    queues = list(per_user.values())
    random.Random(seed).shuffle(queues)
    out: list[dict] = []
    while queues and len(out) < limit:
        queues = [q for q in queues if q]
        for queue in queues:
            out.append(queue.pop(0))
            if len(out) >= limit:
                break
    return out


def warm_up_events(count: int = 200) -> list[dict]:
    """Events of users the measured runs never see (fresh ids, real Beauty items)."""
    return [dict(e, user_id=f"warm-up-{e['user_id']}") for e in interleaved_events(count, seed=3)]


def ensure_model(path: Path | None, work: Path) -> Path:
    """The given artifact, or a Beauty model trained once with the demo preset."""
    if path is not None:
        return path
    out = work / "beauty-model"
    if not (out / "metadata.json").exists():
        data = work / "beauty-events.jsonl"
        data.write_text("".join(json.dumps(e) + "\n" for e in read_events("s3rec", BEAUTY)))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "streamrec",
                "train",
                "--dataset",
                str(data),
                "--format",
                "events",
                "--out",
                str(out),
                "--preset",
                "demo",
                "--overwrite",
            ],
            check=True,
            capture_output=True,
        )
    return out


def bench_workspace(model: Path | None) -> tuple[Settings, Path, Path]:
    """Settings, the benchmarks' work directory (made if missing) and the model to serve."""
    settings = Settings()
    work = settings.data_dir.resolve() / "bench"
    work.mkdir(parents=True, exist_ok=True)
    return settings, work, ensure_model(model, work)


def fresh_env(settings: Settings, tag: str) -> dict[str, str]:
    """Environment for a worker on fresh topics and a fresh consumer group."""
    import os

    suffix = f"{tag}-{int(time.time() * 1000) % 10**9}"
    env = dict(
        os.environ,
        STREAMREC_EVENTS_TOPIC=f"bench-events-{suffix}",
        STREAMREC_RECOMMENDATIONS_TOPIC=f"bench-recs-{suffix}",
        STREAMREC_DLQ_TOPIC=f"bench-dlq-{suffix}",
        # Samples are written as in production, but never into the real pipeline's topic.
        STREAMREC_SAMPLES_TOPIC=f"bench-samples-{suffix}",
        STREAMREC_APP_ID=f"bench-{suffix}",
        STREAMREC_PRIVATE_BOOTSTRAP=settings.private_servers,
    )
    ensure_topics(
        settings.private_servers,
        [
            TopicSpec(env["STREAMREC_EVENTS_TOPIC"], settings.partitions),
            TopicSpec(env["STREAMREC_RECOMMENDATIONS_TOPIC"], settings.partitions),
            TopicSpec(env["STREAMREC_SAMPLES_TOPIC"], settings.partitions),
        ],
    )
    return env


def produce_all(bootstrap: str, topic: str, events: list[dict], rate: float | None = None) -> None:
    """Produce events, paced at ``rate`` per second when given."""

    pace = Pacer(rate, burst=10) if rate else None
    with EventProducer(bootstrap, topic) as producer:
        if pace:
            producer.look_up(topic)
        for event in events:
            if pace:
                pace()
            producer.send(event)


class RssSampler(threading.Thread):
    """Samples a process's resident memory until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc, self.peak, self.running = psutil.Process(pid), 0, True

    def run(self) -> None:
        while self.running:
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.2)


def latencies_at_rate(bootstrap: str, env: dict, events: list[dict], rate: float,
                      measuring: Callable[[], None] | None = None) -> list[float]:
    """Produce at ``rate`` and collect event→recommendation latencies seen by a subscriber.

    ``measuring`` is called after the warm-up, just before the measured events are produced.
    """
    latencies: list[float] = []
    stop = threading.Event()

    def collect() -> None:
        for rec in Subscriber(
            bootstrap, env["STREAMREC_RECOMMENDATIONS_TOPIC"], should_stop=stop.is_set
        ):
            if not rec.value["user_id"].startswith("warm-up-"):
                latencies.append(time.time() * 1000 - rec.value["cause_ingest_time"])

    reader = threading.Thread(target=collect, daemon=True)
    # Warm-up: a started worker's first events take longer (first scorer calls and fetches);
    # these users are not measured (their recommendations arrive before the reader).
    produce_all(bootstrap, env["STREAMREC_EVENTS_TOPIC"], warm_up_events(), rate)
    time.sleep(3)
    reader.start()
    time.sleep(4)  # the subscriber joins its group before the first event
    if measuring is not None:
        measuring()
    produce_all(bootstrap, env["STREAMREC_EVENTS_TOPIC"], events, rate)
    time.sleep(5)
    stop.set()
    reader.join(10)
    return latencies


def summary(latencies: list[float], sent: int) -> dict:
    """Percentiles of a latency sample (ms)."""
    if not latencies:
        return {"recommendations": 0, "events": sent}
    qs = statistics.quantiles(latencies, n=100)
    return {
        "events": sent,
        "recommendations": len(latencies),
        "p50_ms": round(qs[49], 1),
        "p95_ms": round(qs[94], 1),
        "p99_ms": round(qs[98], 1),
        "max_ms": round(max(latencies), 1),
    }
