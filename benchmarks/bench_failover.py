"""Failover benchmark: how long partitions go without recommendations when a worker dies.

Two workers share the events topic (4 partitions) of a cluster of the benchmark's own while a
steady stream flows (every partition gets events every few milliseconds). A subscriber notes when
each recommendation arrives, per partition. Then:

- ``kill``: worker A is killed with SIGKILL and not restarted: A's partitions wait for the
  group to notice (the session timeout), then move to B;
- ``restart``: A is killed and started again at once on the same disk and port (a supervisor
  restarting it): with static membership it takes its own partitions back;
- ``outage``: one worker, the broker stopped for ``--outage-s`` and started again: the lines the
  worker logged meanwhile, and whether every event still got its recommendation.

Per run: the time from the kill to the first recommendation on each of A's partitions, and the
longest gap between two recommendations on B's (the survivor's pause). A's partitions are the
ones whose last recommendation before their gap came within half a second of the kill. Each
scenario runs with this build's settings (``now``) and with the settings the worker had before
(``before``: a 60-s session, a 3-s heartbeat, no static membership).

    python -m benchmarks.bench_failover --out benchmarks/results/failover.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

from benchmarks.workload import fresh_env as pipeline_env
from connectors.sdk.pacing import Pacer
from connectors.sdk.producer import EventProducer
from connectors.sdk.subscriber import Subscriber
from streamrec.broker import KafkaDistribution, LocalCluster, start_clusters
from streamrec.harness import WorkerProcess
from streamrec.settings import Settings

REPO = Path(__file__).resolve().parents[1]

PORT = 39_292  # the benchmark's own cluster, beside the local and the test clusters
PARTITIONS = 4
BEFORE = {"STREAMREC_SESSION_TIMEOUT_S": "60", "STREAMREC_HEARTBEAT_INTERVAL_S": "3",
          "STREAMREC_WORKER_ID": "none"}


def stream_events(count: int, users: int = 400) -> list[dict]:
    """Clicks of ``users`` users in turn, on a small catalogue."""
    return [{"type": "click", "user_id": f"fo-u{n % users}", "item_id": f"i{(n * 7) % 500}"}
            for n in range(count)]


class Arrivals:
    """When each recommendation arrived, per partition (a subscriber thread)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.times: dict[int, list[float]] = {p: [] for p in range(PARTITIONS)}
        self.causes: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(bootstrap, topic), daemon=True)
        self._thread.start()

    def _run(self, bootstrap: str, topic: str) -> None:
        for rec in Subscriber(bootstrap, topic, should_stop=self._stop.is_set):
            self.times[rec.partition].append(time.time())
            self.causes.add(rec.value["cause_event_id"])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def fresh_env(bootstrap: str, tag: str, extra: dict[str, str]) -> dict[str, str]:
    """The pipeline benchmark's fresh topics and group, on this benchmark's cluster."""
    settings = Settings(private_bootstrap=bootstrap, partitions=PARTITIONS)
    return dict(pipeline_env(settings, f"fo-{tag}"), STREAMREC_PARTITIONS=str(PARTITIONS),
                **extra)


def produce(bootstrap: str, topic: str, events: list[dict], rate: float,
            sent: dict[str, str]) -> None:
    """Produce at ``rate``; ``sent`` keeps each user's last event id."""
    pace = Pacer(rate, burst=10)
    with EventProducer(bootstrap, topic) as producer:
        for event in events:
            pace()
            sent[event["user_id"]] = producer.send(event).event_id


def await_last_events(arrivals: Arrivals, sent: dict[str, str], timeout_s: float) -> int:
    """Wait until every user's last event caused a recommendation; returns how many did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = sum(1 for e in sent.values() if e in arrivals.causes)
        if done == len(sent):
            break
        time.sleep(0.5)
    return sum(1 for e in sent.values() if e in arrivals.causes)


def gaps_after(times: list[float], since: float) -> tuple[float, float, float]:
    """The longest gap between arrivals that ends after ``since``: (start, end, length)."""
    best = (since, since, 0.0)
    for before, after in zip(times, times[1:], strict=False):
        if after > since and after - before > best[2]:
            best = (before, after, after - before)
    return best


def failover_run(bootstrap: str, work: Path, model: Path | None, settings_name: str,
                 restart: bool, rate: float, after_s: float) -> dict:
    """Two workers, a steady stream, worker A killed (and restarted at once if ``restart``)."""
    extra = BEFORE if settings_name == "before" else {}
    env = fresh_env(bootstrap, f"{settings_name}-{'restart' if restart else 'kill'}", extra)
    a = WorkerProcess(env, work / f"{settings_name}-a-{restart}", model).start()
    b = WorkerProcess(env, work / f"{settings_name}-b-{restart}", model).start()
    arrivals = Arrivals(bootstrap, env["STREAMREC_RECOMMENDATIONS_TOPIC"])
    warm_s = 25.0 if settings_name == "before" else 12.0  # until both have partitions
    events = stream_events(int(rate * (warm_s + after_s)))
    sent: dict[str, str] = {}
    stream = threading.Thread(target=produce, args=(bootstrap, env["STREAMREC_EVENTS_TOPIC"],
                                                    events, rate, sent))
    stream.start()
    restarted = None
    try:
        time.sleep(warm_s)
        killed_at = time.time()
        a.kill()
        if restart:
            restarted = WorkerProcess(env, a.data_dir, model, port=a.port).start()
        stream.join()
        recommended = await_last_events(arrivals, sent, 120)
        time.sleep(1)
    finally:
        stream.join()
        arrivals.stop()
        for worker in (a, b, restarted):
            if worker is not None:
                worker.stop()
    per_partition = {p: gaps_after(sorted(t), killed_at - 0.5)
                     for p, t in arrivals.times.items()}
    moved = {p: round(end - killed_at, 2) for p, (start, end, length) in per_partition.items()
             if start <= killed_at + 0.5 and length > 0.5}
    stayed = {p: round(length, 2) for p, (start, _, length) in per_partition.items()
              if p not in moved}
    return {
        "settings": settings_name, "scenario": "restart" if restart else "kill",
        "events": len(events), "users": len(sent),
        "users_whose_last_event_was_recommended": recommended,
        "killed_worker_partitions": sorted(moved),
        "kill_to_first_recommendation_s": moved,
        "max_kill_to_first_recommendation_s": max(moved.values(), default=None),
        "survivor_longest_pause_s": max(stayed.values(), default=None),
        "survivor_pause_per_partition_s": stayed,
    }


def outage_run(cluster: LocalCluster, dist: KafkaDistribution, work: Path,
               model: Path | None, outage_s: float, rate: float) -> dict:
    """One worker; the broker stopped for ``outage_s``: lines logged, events recommended."""
    env = fresh_env(cluster.bootstrap, "outage", {})
    worker = WorkerProcess(env, work / "outage", model).start()
    log = worker.data_dir / f"worker-{worker.port}.log"
    arrivals = Arrivals(cluster.bootstrap, env["STREAMREC_RECOMMENDATIONS_TOPIC"])
    sent: dict[str, str] = {}
    try:
        produce(cluster.bootstrap, env["STREAMREC_EVENTS_TOPIC"], stream_events(int(rate * 5)),
                rate, sent)
        time.sleep(3)
        lines_before = len(log.read_text(errors="replace").splitlines())
        cluster.stop()
        time.sleep(outage_s)
        start_clusters([cluster], dist, timeout_s=120)
        time.sleep(15)  # reconnect, rejoin, and the summaries of the closed windows
        after = stream_events(int(rate * 5))
        produce(cluster.bootstrap, env["STREAMREC_EVENTS_TOPIC"],
                [dict(e, user_id=e["user_id"] + "-after") for e in after], rate, sent)
        recommended = await_last_events(arrivals, sent, 120)
        lines = log.read_text(errors="replace").splitlines()[lines_before:]
        alive = worker.alive()
    finally:
        arrivals.stop()
        worker.stop()
    return {"outage_s": outage_s, "worker_log_lines": len(lines), "worker_alive": alive,
            "users": len(sent), "users_whose_last_event_was_recommended": recommended,
            "log_sample": [line[:200] for line in lines[:60]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamrec bench failover", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/failover.json")
    parser.add_argument("--model", type=Path, help="artifact to serve (default: popularity)")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s of the stream")
    parser.add_argument("--after-s", type=float, default=25.0, help="streaming after the kill")
    parser.add_argument("--outage-s", type=float, default=30.0, help="broker outage")
    parser.add_argument("--skip-before", action="store_true", help="only this build's settings")
    args = parser.parse_args(argv)
    settings = Settings()
    work = settings.data_dir.resolve() / "bench" / "failover"
    work.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster("failover", PORT, work / "kafka", partitions=PARTITIONS)
    dist = KafkaDistribution(settings.cache_dir, settings.kafka_version)
    start_clusters([cluster], dist, timeout_s=120)
    runs = []
    try:
        for name in (["now"] if args.skip_before else ["before", "now"]):
            for restart in (False, True):
                run = failover_run(cluster.bootstrap, work, args.model, name, restart, args.rate,
                                   args.after_s)
                print(json.dumps({k: v for k, v in run.items()
                                  if not k.endswith("per_partition_s")}), file=sys.stderr)
                runs.append(run)
        outage = outage_run(cluster, dist, work, args.model, args.outage_s, args.rate)
        print(json.dumps({k: v for k, v in outage.items() if k != "log_sample"}),
              file=sys.stderr)
    finally:
        cluster.stop()
    now = {r["scenario"]: r for r in runs if r["settings"] == "now"}
    report = {
        "benchmark": "failover", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rate_events_per_s": args.rate, "partitions": PARTITIONS,
        "goals": {"kill_to_first_recommendation_s": 10.0, "survivor_longest_pause_s": 2.0,
                  "log_lines_per_30s_outage": 50},
        "runs": runs, "outage": outage,
        "summary": {
            "kill_to_first_recommendation_s": now["kill"]["max_kill_to_first_recommendation_s"],
            "restart_to_first_recommendation_s":
                now["restart"]["max_kill_to_first_recommendation_s"],
            "survivor_longest_pause_s": max(r["survivor_longest_pause_s"] or 0
                                            for r in now.values()),
            "outage_log_lines": outage["worker_log_lines"],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
