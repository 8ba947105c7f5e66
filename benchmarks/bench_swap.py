"""Swap-pause benchmark: a worker's event→recommendation latency around a hot swap.

A worker serves model A under a steady input rate; halfway through, ``POST /model`` switches it
to model B (same catalogue, another version). Latencies are grouped by the time the event was
sent: before the swap, the two seconds around it, and after. No event may fail (every event gets
a recommendation) and p99 during the swap should stay within 2× of normal.

    python -m benchmarks.bench_swap --out benchmarks/results/swap.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.workload import bench_workspace, fresh_env, interleaved_events
from connectors.sdk.pacing import Pacer
from connectors.sdk.producer import EventProducer
from connectors.sdk.subscriber import Subscriber
from streamrec.harness import WorkerProcess
from streamrec.settings import Settings


def second_model(model: Path, work: Path) -> Path:
    """A copy of the model under another version, so the swap loads a real second artifact."""
    from model.artifact import load_artifact, save_artifact

    other = work / "swap-model-b"
    if not (other / "metadata.json").exists():
        art = load_artifact(model)
        meta = {k: v for k, v in art.metadata.items()
                if k not in ("version", "files", "metadata_sha256", "format", "created_at")}
        meta.update(parent_version=art.version, version=f"{art.version}-b")
        save_artifact(other, {n: model / n for n in art.metadata["files"]}, meta)
    return other


def percentiles(values: list[float]) -> dict:
    """p50/p95/p99 in ms (empty dict for no values)."""
    if len(values) < 2:
        return {"n": len(values)}
    qs = statistics.quantiles(values, n=100)
    return {"n": len(values), "p50_ms": round(qs[49], 1), "p95_ms": round(qs[94], 1),
            "p99_ms": round(qs[98], 1)}


def run(settings: Settings, model: Path, other: Path, rate: float, seconds: float,
        work: Path) -> dict:
    """Stream at ``rate`` for ``seconds``, swap at half time, group latencies by send time."""
    env = fresh_env(settings, "swap")
    worker = WorkerProcess(env, work / "swap", model).start()
    events = interleaved_events(int(rate * seconds), seed=5)
    sent_at: dict[str, float] = {}
    got: dict[str, float] = {}
    stop = threading.Event()

    def collect() -> None:
        for rec in Subscriber(settings.private_servers, env["STREAMREC_RECOMMENDATIONS_TOPIC"],
                              should_stop=stop.is_set):
            got.setdefault(rec.value["cause_event_id"], time.time())

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    time.sleep(4)
    swap_at = 0.0
    try:
        pace = Pacer(rate, burst=10)
        with EventProducer(settings.private_servers, env["STREAMREC_EVENTS_TOPIC"]) as producer:
            for n, event in enumerate(events):
                pace()
                sent_at[producer.send(event).event_id] = time.time()
                if n == len(events) // 2:
                    swap_at = time.time()
                    threading.Thread(target=_swap, args=(worker.url, other), daemon=True).start()
        deadline = time.time() + 30
        while len(got) < len(sent_at) and time.time() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        worker.stop()
    return _grouped(sent_at, got, swap_at)


def _swap(url: str, path: Path) -> None:
    body = json.dumps({"path": str(path)}).encode()
    request = urllib.request.Request(url + "/model", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=60) as resp:
        resp.read()


def _grouped(sent_at: dict[str, float], got: dict[str, float], swap_at: float) -> dict:
    """Latency percentiles before, around (±1 s) and after the swap; events never answered."""
    groups: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    missing = 0
    for event_id, sent in sent_at.items():
        if event_id not in got:
            missing += 1
            continue
        latency = (got[event_id] - sent) * 1000
        key = "during" if abs(sent - swap_at) <= 1 else ("before" if sent < swap_at else "after")
        groups[key].append(latency)
    # Coalesced events (a newer event of the user in the same batch) get no record of their own.
    return {"events": len(sent_at), "answered": len(got), "unanswered": missing,
            **{k: percentiles(v) for k, v in groups.items()}}


def main(argv: list[str] | None = None) -> int:
    """Measure and print; write JSON with --out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", type=Path, help="artifact (default: the bench Beauty model)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    settings, work, model = bench_workspace(args.model)
    result = run(settings, model, second_model(model, work), args.rate, args.seconds, work)
    before, during = result["before"].get("p99_ms"), result["during"].get("p99_ms")
    if before and during:
        result["p99_during_over_before"] = round(during / before, 2)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work / "swap", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
