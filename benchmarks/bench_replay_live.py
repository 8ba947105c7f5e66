"""Replay beside live traffic: worker p99 alone, beside a capped and an uncapped replay.

The replay copies a large backlog between two other topics of the same (private) cluster, as a
backfill would, while the worker serves live events at a fixed rate.

    python -m benchmarks.bench_replay_live --out benchmarks/results/replay-live.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.workload import (
    bench_workspace,
    fresh_env,
    interleaved_events,
    latencies_at_rate,
    produce_all,
    summary,
)
from streamrec.harness import WorkerProcess
from streamrec.settings import Settings

# (name, --rate); the 5k cap keeps the replay running through the whole phase.
CASES = (("capped_5k", 5_000.0), ("capped_default_20k", 20_000.0), ("uncapped", 0.0))


def start_replay(settings: Settings, source: str, target: str, rate: float) -> subprocess.Popen:
    """``streamrec replay`` of the whole source into a fresh target at ``rate`` (0: uncapped)."""
    cmd = [sys.executable, "-m", "streamrec", "replay", "--from-topic", source, "--to-topic",
           target, "--since", "-1d", "--rate", str(rate), "--quiet"]
    env = dict(os.environ, STREAMREC_PRIVATE_BOOTSTRAP=settings.private_servers)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def phase(settings: Settings, env: dict, rate: float, seconds: float, seed: int,
          replay: subprocess.Popen | None) -> dict:
    """Latency percentiles of live events at ``rate`` for ``seconds`` (a replay may run)."""
    events = interleaved_events(int(rate * seconds), seed=seed)
    try:
        result = summary(latencies_at_rate(settings.private_servers, env, events, rate),
                         len(events))
    finally:
        if replay is not None:
            result_code = replay.poll()
            if result_code is None:
                os.killpg(replay.pid, signal.SIGTERM)
                replay.wait(30)
    result["replay_still_running_at_end"] = replay is not None and result_code is None
    return result


def main(argv: list[str] | None = None) -> int:
    """Measure the three phases; print and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300.0, help="live events/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--backlog", type=int, default=150_000, help="events to replay")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    settings, work, model = bench_workspace(args.model)
    source = fresh_env(settings, "replay-src")["STREAMREC_EVENTS_TOPIC"]
    produce_all(settings.private_servers, source, interleaved_events(args.backlog, seed=3))
    env = fresh_env(settings, "replay-live")
    worker = WorkerProcess(env, work / "replay-live", model).start()
    result: dict = {"live_rate": args.rate, "backlog": args.backlog}
    try:
        time.sleep(3)
        result["alone"] = phase(settings, env, args.rate, args.seconds, 21, None)
        for name, cap in CASES:
            target = f"{source}-copy-{name}"
            replay = start_replay(settings, source, target, cap)
            result[name] = phase(settings, env, args.rate, args.seconds, 22, replay)
    finally:
        worker.stop()
    for name, _ in CASES:
        if result["alone"].get("p99_ms") and result[name].get("p99_ms"):
            result[f"{name}_p99_over_alone"] = round(
                result[name]["p99_ms"] / result["alone"]["p99_ms"], 2)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
