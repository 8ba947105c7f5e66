"""The served model on CUDA against the CPU: do they recommend the same, and how fast is each.

Takes a real artifact (e.g. the demo's Beauty model), scores random histories of its own items on
ONNX Runtime's CUDA provider and on the CPU provider (one thread, and all cores but one), and
reports how often the top-k lists agree, the largest score difference on a shared item, and the
median latency per batch size. Needs onnxruntime-gpu and an NVIDIA GPU.

    streamrec bench devices --model var/demo/model --out /tmp/devices.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="artifact directory")
    p.add_argument("--batches", default="1,7,32,128,256,512", help="users per call")
    p.add_argument("--k", type=int, default=20, help="items returned per user")
    p.add_argument("--repeats", type=int, default=30, help="timed calls per case (a third "
                   "of it for batches over 128)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON results here")
    return p.parse_args(argv)


def agreement(a: list, b: list) -> tuple[float, float, float]:
    """Share of equal ids by position, share of equal id sets, largest |score| gap on an id."""
    positions = [x[0] == y[0] for ra, rb in zip(a, b, strict=True)
                 for x, y in zip(ra, rb, strict=True)]
    sets = [len({i for i, _ in ra} & {i for i, _ in rb}) / max(1, len(ra))
            for ra, rb in zip(a, b, strict=True)]
    gaps = []
    for ra, rb in zip(a, b, strict=True):
        scores = dict(rb)
        gaps += [abs(scores[i] - s) for i, s in ra if i in scores]
    return (sum(positions) / len(positions), sum(sets) / len(sets), max(gaps, default=0.0))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``streamrec bench devices``."""
    args = parse_args(argv)
    import numpy as np

    from model.providers import cuda_unavailable_reason
    from model.scorer import Scorer

    reason = cuda_unavailable_reason()
    if reason is not None:
        print(f"bench devices: {reason}; run it on a machine with an NVIDIA GPU",
              file=sys.stderr)
        return 2
    cores = len(os.sched_getaffinity(0))
    scorers = {
        "cuda": Scorer(args.model, device="cuda"),
        "cpu-1-thread": Scorer(args.model, device="cpu", threads=1),
    }
    if cores > 2:  # the worker's default: all cores but one
        scorers[f"cpu-{cores - 1}-threads"] = Scorer(args.model, device="cpu", threads=cores - 1)
    items = scorers["cuda"].artifact.item_ids[1:]
    rng = np.random.default_rng(1)
    batches = [int(b) for b in args.batches.split(",")]
    pool = [list(rng.choice(items, size=int(rng.integers(1, 50)))) for _ in range(max(batches))]
    on_gpu = scorers["cuda"].top_k(pool, args.k)
    on_cpu = scorers["cpu-1-thread"].top_k(pool, args.k)
    positions, sets, gap = agreement(on_gpu, on_cpu)
    print(f"top-{args.k} of {len(pool)} users, CUDA vs CPU: ids equal by position {positions:.2%}, "
          f"as sets {sets:.2%}; largest score gap on a shared id {gap:.1e}", flush=True)
    latency: dict[str, dict[str, float]] = {}
    for name, scorer in scorers.items():
        row = {}
        for users in batches:
            scorer.top_k(pool[:users], args.k)  # warm-up
            times = []
            for r in range(args.repeats if users <= 128 else max(3, args.repeats // 3)):
                start = (r * users) % max(1, len(pool) - users + 1)
                t0 = time.perf_counter()
                scorer.top_k(pool[start : start + users], args.k)
                times.append(time.perf_counter() - t0)
            row[str(users)] = round(1000 * statistics.median(times), 3)
        latency[name] = row
        print(f"{name:<16}" + "  ".join(f"b{b}: {ms:.2f} ms" for b, ms in row.items()), flush=True)
    report = {
        "model": {"version": scorers["cuda"].version, "n_items": len(items)},
        "cores": cores,
        "k": args.k,
        "agreement": {"positions": positions, "sets": sets, "max_score_gap": gap},
        "median_latency_ms": latency,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
