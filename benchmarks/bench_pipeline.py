"""Pipeline benchmark: one streamrec worker against a naive per-event baseline, same brokers/data.

Measures, on real brokers with real data (Amazon Beauty, ~12k items, users interleaved so a
batch rarely holds two events of one user):

1. sustained throughput: a backlog of N events, time from the first event taken to the last one
   applied (events/s), for the worker and for the baseline;
2. event→recommendation latency at a fixed rate (default 1,000 events/s): Kafka timestamp of the
   event to the moment the recommendation reaches a subscriber (p50/p95/p99; at the main rate
   the median of each over ``--repeats`` runs, alternating with Faust's own client fetching);
3. peak RSS of the worker process;
4. the ceiling: a Faust agent that takes the same backlog in micro-batches and does nothing;
5. the floor: the same paced load through a librdkafka forwarder that does nothing
   (``benchmarks/transit_floor.py``), and the worker with Faust's own client fetching events;
6. the worker on a core of its own (``benchmarks/cores.py``): the latency runs at the main rate
   again, with the brokers, the load generator and the subscriber pinned to the other cores.

The baseline is what one would write first: a confluent-kafka loop that decodes each event,
updates an in-memory history, scores that one user with torch eager, and produces the result.

    python -m benchmarks.bench_pipeline --out benchmarks/results/pipeline.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil

from benchmarks.cores import CoreSplit, listening_pids, split_cores
from benchmarks.transit_floor import floor_latency
from benchmarks.workload import (
    RssSampler,
    bench_workspace,
    fresh_env,
    interleaved_events,
    latencies_at_rate,
    produce_all,
    summary,
    warm_up_events,
)
from streamrec.harness import WorkerProcess
from streamrec.settings import Settings

REPO = Path(__file__).resolve().parents[1]

LATENCY_GOAL_S = 0.05  # the p99 goal at 1,000 events/s


def worker_throughput(settings: Settings, model: Path, events: list[dict], work: Path) -> dict:
    """Events/s of one worker draining a backlog."""
    env = fresh_env(settings, "tput")
    produce_all(settings.private_servers, env["STREAMREC_EVENTS_TOPIC"], events)
    worker = WorkerProcess(env, work / "tput", model).start()
    rss = RssSampler(worker.proc.pid)
    rss.start()
    try:
        first = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            taken = worker.metric("streamrec_events_in_total")
            if taken and first is None:
                first = time.monotonic()
            if (
                worker.metric("streamrec_recommendations_total")
                and taken >= len(events)
                and worker.metric("streamrec_events_applied_total") >= len(events)
            ):
                break
            time.sleep(0.1)
        seconds = time.monotonic() - (first or time.monotonic())
        batches = worker.metric("streamrec_batch_size_count")
        return {
            "topic": env["STREAMREC_EVENTS_TOPIC"],
            "events": len(events),
            "seconds": round(seconds, 2),
            "events_per_s": round(len(events) / seconds, 1),
            "mean_batch": round(len(events) / max(batches, 1), 1),
            "peak_rss_mb": round(rss.peak / 2**20, 1),
        }
    finally:
        rss.running = False
        worker.stop()


def faust_ceiling(settings: Settings, topic: str, events: int, work: Path) -> dict:
    """Rate of a Faust agent that takes the same backlog and does nothing with it."""
    import os

    out = work / "ceiling.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ, CEILING_TOPIC=topic, CEILING_EVENTS=str(events),
               CEILING_OUT=str(out), CEILING_DIR=str(work / "ceiling"),
               CEILING_BOOTSTRAP=settings.private_servers, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-m", "faust", "-A", "benchmarks.faust_ceiling", "worker",
                    "-l", "warn"], env=env, capture_output=True, timeout=900, cwd=REPO)
    return json.loads(out.read_text()) if out.exists() else {"error": "did not finish"}


def median_of(runs: list[dict]) -> dict:
    """Each percentile's median over several runs' summaries; the runs are kept too."""
    out: dict = {"runs": len(runs), "events": sum(r["events"] for r in runs),
                 "recommendations": sum(r.get("recommendations", 0) for r in runs)}
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        values = [r[key] for r in runs if key in r]
        if values:
            out[key] = round(statistics.median(values), 1)
    key = within_key(LATENCY_GOAL_S)
    shares = [r["worker_written"][key] for r in runs
              if r.get("worker_written", {}).get(key) is not None]
    if shares:
        out["worker_written_" + key] = round(statistics.median(shares), 2)
    maxima = [r["max_ms"] for r in runs if "max_ms" in r]
    if maxima:
        out["max_ms"] = max(maxima)
    out["each"] = runs
    return out


def worker_latency(
    settings: Settings, model: Path, events: list[dict], rate: float, work: Path,
    extra_env: dict[str, str] | None = None, cpus: frozenset[int] | None = None,
) -> dict:
    """Latency percentiles of the worker at a fixed input rate (on ``cpus`` if given)."""
    env = dict(fresh_env(settings, "lat"), **(extra_env or {}))
    worker = WorkerProcess(env, work / "lat", model, cpus=cpus).start()
    written = "streamrec_event_to_recommendation_seconds_bucket"
    before: list = []
    try:
        time.sleep(3)
        out = summary(latencies_at_rate(settings.private_servers, env, events, rate,
                                        lambda: before.extend(worker.samples(written))),
                      len(events))
        out["worker_written"] = written_within(before, worker.samples(written), LATENCY_GOAL_S)
        out["batch_stages"] = stage_quantiles(
            worker.samples("streamrec_batch_stage_seconds_bucket"))
        return out
    finally:
        worker.stop()


def written_within(before: list[tuple[dict[str, str], float]],
                   after: list[tuple[dict[str, str], float]], bound_s: float) -> dict:
    """Recommendations the worker wrote between two readings of its
    ``streamrec_event_to_recommendation_seconds`` buckets, and the share of them written within
    ``bound_s`` of their event's Kafka timestamp (``bound_s`` must be a bucket bound). Set
    against what the subscriber saw, it tells the worker's own delays from those after it (the
    broker and the subscriber)."""
    def counts(samples: list[tuple[dict[str, str], float]]) -> tuple[float, float]:
        by_le = {float(labels["le"]): count for labels, count in samples}
        if bound_s not in by_le:
            raise ValueError(f"{bound_s} s is not a bucket bound of the latency histogram")
        return by_le[bound_s], by_le.get(float("inf"), 0.0)

    (low0, all0), (low1, all1) = counts(before) if before else (0.0, 0.0), counts(after)
    total = all1 - all0
    return {"recommendations": int(total),
            within_key(bound_s): round(100 * (low1 - low0) / total, 2) if total else None}


def within_key(bound_s: float) -> str:
    """The report's name for the share written within ``bound_s``: ``within_50_ms_pct``."""
    return f"within_{bound_s * 1000:g}_ms_pct"


def stage_quantiles(buckets_of: list[tuple[dict[str, str], float]],
                    quantiles: tuple[float, ...] = (0.5, 0.99)) -> dict:
    """p50/p99 (ms) of each batch stage, from the worker's ``streamrec_batch_stage_seconds``
    histogram: its ``_bucket`` samples (labels, cumulative count), interpolated within the
    buckets, so as coarse as they are."""
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for labels, count in buckets_of:
        buckets[labels["stage"]].append((float(labels["le"]), count))
    out = {}
    for stage, cumulative in buckets.items():
        cumulative.sort()
        total = cumulative[-1][1]
        if not total:
            continue
        row = {"batches": int(total)}
        for q in quantiles:
            lower, below = 0.0, 0.0
            for bound, count in cumulative:
                if count >= q * total:
                    if bound == float("inf"):
                        value = lower  # beyond the last finite bucket: report its bound
                    else:
                        share = (q * total - below) / (count - below) if count > below else 1.0
                        value = lower + share * (bound - lower)
                    break
                lower, below = bound, count
            row[f"p{round(q * 100)}_ms"] = round(value * 1000, 1)
        out[stage] = row
    return out


def baseline(
    settings: Settings,
    model: Path,
    events: list[dict],
    paced: list[dict],
    rate: float,
    budget_s: float,
) -> dict:
    """The naive loop's throughput on a backlog and its latency at ``rate``."""
    from benchmarks.naive_baseline import NaiveLoop

    env = fresh_env(settings, "base")
    loop = NaiveLoop(settings.private_servers, env, model)
    produce_all(settings.private_servers, env["STREAMREC_EVENTS_TOPIC"], events)
    done, seconds = loop.run(len(events), budget_s)
    tput = {"events": done, "seconds": round(seconds, 2), "events_per_s": round(done / seconds, 1)}
    env = fresh_env(settings, "base-lat")
    loop = NaiveLoop(settings.private_servers, env, model)
    runner = threading.Thread(target=loop.run, args=(10**9, budget_s + 40), daemon=True)
    runner.start()
    lat = summary(latencies_at_rate(settings.private_servers, env, paced, rate), len(paced))
    loop.stop = True
    runner.join(30)
    return {"throughput": tput, "latency": lat}


def plot(result: dict, path: Path) -> None:
    """Bar chart of throughput and latency percentiles, worker vs baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = ["streamrec worker", "naive baseline", "Faust alone"]
    rates = [result["worker"]["throughput"]["events_per_s"],
             result["baseline"]["throughput"]["events_per_s"],
             result["faust_ceiling"].get("events_per_s", 0)]
    left.bar(names, rates, color=["tab:blue", "tab:gray", "tab:orange"])
    left.set_ylabel("events/s (backlog)")
    left.set_title("Sustained throughput")
    shown = [("worker,\nshared cores", result["worker"]["latency"])]
    if "latency_own_cores" in result["worker"]:
        shown.append(("worker,\nits own core", result["worker"]["latency_own_cores"]))
    shown.append(("naive\nbaseline", result["baseline"]["latency"]))
    for i, key in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        vals = [lat.get(key, 0) for _, lat in shown]
        right.bar([x + i * 0.25 for x in range(len(shown))], vals, width=0.25, label=key)
    right.set_xticks([x + 0.25 for x in range(len(shown))], [name for name, _ in shown])
    right.set_yscale("log")
    right.set_ylabel("ms (log)")
    right.set_title(f"Event→recommendation at {result['rate']:.0f} events/s")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def latency_runs(args: argparse.Namespace, settings: Settings, model: Path, paced: list[dict],
                 work: Path) -> tuple[dict, dict]:
    """The worker's latency runs: a warm-up run, then each kind of run ``--repeats`` times."""
    # At the main rate, runs alternate with the same worker fetching through Faust's own client, and
    # each percentile is the median over the runs (every run is kept in the JSON).
    runs: dict[str, list[dict]] = {"librdkafka": [], "faust": []}
    # One unmeasured run first: the first run on freshly started brokers was two to three times
    # slower than the next ones whichever reader or part of the benchmark came first.
    warm_up = worker_latency(settings, model, paced, args.rate, work)
    # A third kind of run, interleaved with the others: the worker on cores of its own, as in
    # production, with the brokers, the load generator and the subscriber on the rest.
    split = split_cores(args.worker_cores) if args.worker_cores else None
    cores = None if split is None else CoreSplit(
        *split, listening_pids([settings.private_servers, settings.public_servers]))
    own: list[dict] = []
    for _ in range(args.repeats):
        for reader in runs:
            runs[reader].append(worker_latency(settings, model, paced, args.rate, work,
                                               {"STREAMREC_EVENTS_READER": reader}))
        if cores is not None:
            with cores:
                own.append(worker_latency(settings, model, paced, args.rate, work,
                                          cpus=cores.worker_cpus))
    worker = {"latency": median_of(runs["librdkafka"]),
              "latency_faust_fetch": median_of(runs["faust"])}
    if cores is not None:
        worker["latency_own_cores"] = dict(median_of(own), **cores.describe())
    worker["latency_by_rate"] = {
        f"{rate:g}": worker_latency(
            settings, model, interleaved_events(int(rate * args.latency_seconds), seed=11), rate,
            work)
        for rate in args.more_rates
    }
    return warm_up, worker


def main(argv: list[str] | None = None) -> int:
    """Run both systems and print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000, help="backlog size")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s for latency")
    parser.add_argument("--more-rates", type=float, nargs="*", default=[300.0, 600.0],
                        help="other rates at which the worker's latency is measured too")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="latency runs at --rate (each reader), medians reported")
    parser.add_argument(
        "--baseline-budget",
        type=float,
        default=60.0,
        help="seconds the baseline may take per phase",
    )
    parser.add_argument("--model", type=Path, help="artifact to serve (default: train one)")
    parser.add_argument("--worker-cores", type=int, default=1,
                        help="cores of its own the worker gets in the own-cores latency runs "
                        "(brokers, load and subscriber on the others; 0: no such runs)")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "pipeline.json")
    args = parser.parse_args(argv)
    settings, work, model = bench_workspace(args.model)
    backlog = interleaved_events(args.events)
    paced = interleaved_events(int(args.rate * args.latency_seconds), seed=11)
    result = {
        "machine": f"{psutil.cpu_count()} cores",
        "model": str(model),
        "rate": args.rate,
        "catalogue_items": json.loads((model / "metadata.json").read_text())["config"]["n_items"],
    }
    # Latency first, on brokers that are not still busy with the backlog runs' records.
    result["warm_up_run"], result["worker"] = latency_runs(args, settings, model, paced, work)
    # The machine's floor: the same load through a forwarder that does nothing.
    result["floor"] = floor_latency(settings.private_servers, settings.partitions, paced,
                                    args.rate, warm_up_events())
    result["worker"]["throughput"] = worker_throughput(settings, model, backlog, work)
    result["faust_ceiling"] = faust_ceiling(settings, result["worker"]["throughput"]["topic"],
                                            len(backlog), work)
    result["baseline"] = baseline(settings, model, backlog, paced, args.rate, args.baseline_budget)
    result["ratio_throughput"] = round(
        result["worker"]["throughput"]["events_per_s"]
        / result["baseline"]["throughput"]["events_per_s"],
        1,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(result, args.out.with_suffix(".png"))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
