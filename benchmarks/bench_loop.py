"""Learning-loop freshness: from a new item's first events to a live model that can recommend it.

Fills a fresh public training topic with anonymised YooChoose sessions (warm-up), starts the
incremental trainer as its own process (``python -m streamrec.cli.follow``) and the model sync
in this process, waits for the first release to be served, then streams live traffic at
``--rate`` samples/s and every ``--new-every`` seconds brings in a never-seen item, clicked in a
few sessions. An item's freshness is the time from producing its first sample to the moment
the private ``current`` link points to a model that knows it (trained, released, signed,
fetched, verified, canaried, activated). Workers add at most their 2 s look at the link. Also
reported: each window's time (train + compare + export) as the releases record it, and how high
each new item ranks, when first known, after the clicks that led to it (top 100 of the graph).

    python -m benchmarks.bench_loop --items 12 --out benchmarks/results/loop.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from connectors.datasets.readers import read_events
from connectors.kafka.producer import RecordProducer
from connectors.kafka.topics import TopicSpec, delete_topics, ensure_topics
from connectors.privacy.anonymizer import Anonymizer
from connectors.releases.records import read_releases
from connectors.releases.registry import PrivateModels
from connectors.releases.signing import generate_keypair
from connectors.releases.sync import ModelSync, SyncConfig
from model.artifact import load_artifact
from model.scorer import Scorer
from schemas import default_codec
from streamrec.settings import load_settings

DATASET = (Path(__file__).resolve().parents[2] / "shared" / "datasets" / "yoochoose-rsc15-100k"
           / "yoochoose-clicks-100k_train_full.txt")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=Path, default=DATASET, help="YooChoose clicks file")
    p.add_argument("--users", type=int, default=8000, help="YooChoose sessions to use")
    p.add_argument("--warmup", type=int, default=6000, help="samples before the live phase")
    p.add_argument("--rate", type=float, default=100.0, help="live samples per second")
    p.add_argument("--items", type=int, default=12, help="new items brought in")
    p.add_argument("--new-every", type=float, default=8.0, help="seconds between new items")
    p.add_argument("--sessions", type=int, default=5, help="sessions clicking each new item")
    p.add_argument("--window-seconds", type=float, default=10.0, help="trainer window time")
    p.add_argument("--timeout", type=float, default=180.0, help="give up on an item after this")
    p.add_argument("--out", type=Path, help="write the JSON results here")
    return p.parse_args(argv)


class Stream:
    """Anonymises events into samples and produces them to the training topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.anonymizer = Anonymizer(b"bench-loop-secret", 1, 4096, 3_600_000, 1.0)
        self.codec = default_codec()
        self.topic = topic
        self.producer = RecordProducer(bootstrap, None, **{"linger.ms": 1})
        self._seq: Counter[str] = Counter()

    def send(self, events: list[dict]) -> None:
        """Anonymise and produce events, then wait until the broker has them."""
        for event in events:
            sample = self.anonymizer.anonymize(event, self._seq[event["user_id"]])
            assert sample is not None  # sample_rate 1.0: every user is sampled
            self._seq[event["user_id"]] += 1
            self.producer.produce(self.topic, sample.pseudonym.encode(),
                                  self.codec.write(sample))
        self.producer.flush()


def new_item_events(k: int, sessions: int, popular: list[str]) -> list[dict]:
    """Sessions that click two popular items, the new item ``new-k``, then another popular one."""
    now = int(time.time() * 1000)
    events = []
    for s in range(sessions):
        for n, item in enumerate([popular[s], popular[s + 1], f"new-{k}", popular[s + 2]]):
            events.append({"event_id": f"bench-new-{k}-{s}-{n}", "user_id": f"bench-{k}-{s}",
                           "type": "click", "item_id": item, "timestamp": now + n})
    return events


class Watcher(threading.Thread):
    """Polls the private ``current`` link; notes when each pending item becomes known."""

    def __init__(self, models: PrivateModels) -> None:
        super().__init__(daemon=True)
        self.models = models
        self.pending: dict[str, tuple[float, list[list[str]]]] = {}
        self.fresh: dict[str, float] = {}
        self.best_rank: dict[str, int | None] = {}  # best rank after the histories; None: > k
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def expect(self, item: str, since: float, histories: list[list[str]]) -> None:
        """Watch for ``item``, produced first at ``since``, led to by ``histories``."""
        with self._lock:
            self.pending[item] = (since, histories)

    def run(self) -> None:
        seen = None
        while not self.stop.wait(0.1):
            version = self.models.current()
            if version is None or version == seen:
                continue
            seen = version
            known = set(load_artifact(self.models.path_of(version)).item_ids)
            now = time.monotonic()
            with self._lock:
                arrived = {i: self.pending.pop(i) for i in list(self.pending) if i in known}
            if not arrived:
                continue
            scorer = Scorer(self.models.path_of(version), device="cpu")
            for item, (since, histories) in arrived.items():
                self.fresh[item] = round(now - since, 2)
                ranks = [[i for i, _ in rec].index(item) + 1
                         for rec in scorer.top_k(histories, scorer.k)
                         if item in {i for i, _ in rec}]
                self.best_rank[item] = min(ranks, default=None)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 2)


def start_trainer(settings, topics: dict[str, str], root: Path, args) -> subprocess.Popen:
    """The incremental trainer as its own process, as it runs on the public side."""
    env = dict(os.environ, STREAMREC_PUBLIC_BOOTSTRAP=settings.public_servers,
               STREAMREC_TRAIN_TOPIC=topics["train"], STREAMREC_RELEASES_TOPIC=topics["releases"],
               STREAMREC_MODEL_STORE=str(root / "store"),
               STREAMREC_SIGNING_KEY_PATH=str(root / "trainer.key"))
    cmd = [sys.executable, "-m", "streamrec.cli.follow", "--window-clicks", "1000000",
           "--window-seconds", str(args.window_seconds), "--min-clicks", "20", "--dim", "32",
           "--layers", "1", "--heads", "1", "--max-len", "20"]
    log = (root / "trainer.log").open("wb")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def live_phase(args, stream: Stream, live: list[dict], popular: list[str],
               watcher: Watcher) -> None:
    """Stream live traffic at the rate; bring in a new item every ``new_every`` seconds."""
    started = time.monotonic()
    next_item, sent, last_new = 0, 0, started
    while True:
        now = time.monotonic()
        if next_item < args.items and now - started >= next_item * args.new_every:
            histories = [[popular[s], popular[s + 1]] for s in range(args.sessions)]
            watcher.expect(f"new-{next_item}", now, histories)
            stream.send(new_item_events(next_item, args.sessions, popular))
            next_item, last_new = next_item + 1, now
        elif next_item == args.items and (not watcher.pending or now - last_new > args.timeout):
            return
        due = min(len(live), int((now - started) * args.rate))
        if due > sent:
            stream.send(live[sent:due])
            sent = due
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the summary, write the JSON."""
    args = parse_args(argv)
    settings = load_settings()
    suffix = f"{int(time.time())}-{os.getpid()}"
    topics = {"train": f"bench-loop-train-{suffix}", "releases": f"bench-loop-releases-{suffix}"}
    ensure_topics(settings.public_servers, [TopicSpec(topics["train"], 4)])
    root = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    generate_keypair(root / "trainer.key", root / "trainer.pub")
    events = list(read_events("yoochoose", args.dataset, limit_users=args.users))
    warm, live = events[: args.warmup], events[args.warmup:]
    popular = [i for i, _ in Counter(e["item_id"] for e in warm).most_common(args.sessions + 2)]
    stream = Stream(settings.public_servers, topics["train"])
    stream.send(warm)
    trainer = start_trainer(settings, topics, root, args)
    sync = ModelSync(SyncConfig(settings.public_servers, topics["releases"],
                                root / "models-private", root / "trainer.pub", device="cpu"))
    sync_thread = threading.Thread(target=sync.run, daemon=True)
    sync_thread.start()
    watcher = Watcher(sync.models)
    watcher.start()
    try:
        deadline = time.monotonic() + args.timeout
        while sync.models.current() is None:
            if time.monotonic() > deadline or trainer.poll() is not None:
                raise SystemExit(f"no first model; see {root / 'trainer.log'}")
            time.sleep(0.5)
        live_phase(args, stream, live, popular, watcher)
    finally:
        trainer.terminate()
        trainer.wait(60)
        watcher.stop.set()
        sync.stop()
        sync_thread.join(10)
    report = summary(args, settings, topics, watcher)
    print(json.dumps({k: v for k, v in report.items() if k != "items"}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    delete_topics(settings.public_servers, topics.values())
    return 0 if not watcher.pending else 1


def summary(args, settings, topics: dict[str, str], watcher: Watcher) -> dict:
    """The results: freshness per item, median and p95, window times, releases."""
    releases = read_releases(settings.public_servers, topics["releases"])
    windows = [r.metrics["window_seconds"] for r in releases]
    fresh = list(watcher.fresh.values())
    return {
        "benchmark": "learning-loop freshness",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "config": {k: str(v) for k, v in vars(args).items()},
        "freshness_s": {"median": percentile(fresh, 0.5) if fresh else None,
                        "p95": percentile(fresh, 0.95) if fresh else None,
                        "max": max(fresh, default=None), "items": len(fresh),
                        "never_known": sorted(watcher.pending)},
        "new_item_rank": _rank_summary(watcher.best_rank),
        "window_s": {"median": percentile(windows, 0.5) if windows else None,
                     "p95": percentile(windows, 0.95) if windows else None, "n": len(windows)},
        "releases": len(releases),
        "items": {"freshness_s": watcher.fresh, "best_rank": watcher.best_rank},
    }


def _rank_summary(best: dict[str, int | None]) -> dict:
    """How high the new items rank, when first known, after the clicks that led to them."""
    ranks = [r for r in best.values() if r is not None]
    n = max(1, len(best))
    return {"in_top20_share": round(sum(r <= 20 for r in ranks) / n, 3),
            "in_top100_share": round(len(ranks) / n, 3),
            "median_rank_within_top100": statistics.median(ranks) if ranks else None}


if __name__ == "__main__":
    sys.exit(main())
