"""Scorer speed: ONNX Runtime (the served graph) vs torch eager, same model, same inputs.

For each catalogue size a randomly initialised model (the speed does not depend on the weights)
is exported to an artifact; each engine then runs in its own process, so that its peak memory
is its own. Latency is end to end: external ids in, (id, score) lists out; medians over repeats.

    python -m benchmarks.bench_scorer --out benchmarks/results/scorer.json
    streamrec bench scorer --sizes 12000,100000 --batches 1,32,256 --out /tmp/bench.json
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
import time
from pathlib import Path

HISTORY = 30  # items per user history


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the benchmark (also used by ``streamrec bench scorer``)."""
    p.add_argument("--sizes", default="12000,100000,1000000", help="catalogue sizes")
    p.add_argument("--batches", default="1,32,256", help="users per call")
    p.add_argument("--k", type=int, default=20, help="items returned per user")
    p.add_argument("--repeats", type=int, default=15, help="timed calls per case")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of each engine")
    p.add_argument("--engines", default="ort,torch", help="ort and/or torch")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where both engines run (cuda: ONNX Runtime's CUDA provider, torch on GPU)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON results here")
    p.add_argument("--child", choices=("ort", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--artifact", type=Path, help=argparse.SUPPRESS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the benchmark (and of its per-engine child processes)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return p.parse_args(argv)


def make_artifact(n_items: int, root: Path) -> Path:
    """A random-weight model over ``n_items`` synthetic items, saved as an artifact."""
    import torch

    from model.artifact import save_artifact
    from model.config import ModelConfig
    from model.export import export_onnx
    from model.network import SASRec

    torch.manual_seed(0)
    cfg = ModelConfig(n_items=n_items, max_len=50, top_k=100)
    model = SASRec(cfg).eval()
    onnx_path, weights = root / f"m{n_items}.onnx", root / f"w{n_items}.pt"
    signature = export_onnx(model, onnx_path)
    torch.save(model.state_dict(), weights)
    meta = {
        "config": cfg.to_dict(),
        "onnx": signature,
        "metrics": {},
        "item_ids": ["", *(f"item{i}" for i in range(1, n_items + 1))],
    }
    out = root / f"artifact-{n_items}"
    save_artifact(out, {"model.onnx": onnx_path, "weights.pt": weights}, meta)
    onnx_path.unlink()
    weights.unlink()
    return out


def histories(n_items: int, batch: int, seed: int) -> list[list[str]]:
    """Random histories of known items (plus one unknown id each, as in real traffic)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(1, n_items + 1, size=(batch, HISTORY))
    return [[f"item{i}" for i in row] + ["not-in-catalogue"] for row in ids.tolist()]


def torch_engine(artifact: Path, threads: int, device: str = "cpu"):
    """torch eager top-K with the served graph's semantics; big score matrices in user chunks.

    On ``cuda`` the inputs are copied to the GPU and the results back, as the scorer does."""
    import numpy as np
    import torch

    from model.artifact import load_artifact
    from model.batches import pad_left
    from model.export import ServingGraph
    from model.network import SASRec

    torch.set_num_threads(threads)
    art = load_artifact(artifact)
    model = SASRec(art.config)
    model.load_state_dict(torch.load(art.file("weights.pt"), weights_only=True))
    graph = ServingGraph(model.eval(), art.config.top_k).eval().to(device)
    index = {item: i for i, item in enumerate(art.item_ids) if i}
    names = art.item_ids
    # Same call sizes as the scorer: at most 512 users, at most 128 MB of scores.
    chunk = max(1, min(512, (1 << 25) // (art.config.n_items + 1)))

    @torch.inference_mode()
    def top_k(batch: list[list[str]], k: int) -> list[list[tuple[str, float]]]:
        seqs = [np.asarray([index[i] for i in h if i in index], dtype=np.int64) for h in batch]
        out = []
        for s in range(0, len(seqs), chunk):
            part = seqs[s : s + chunk]
            longest = max(1, max(map(len, part)))
            seq = torch.from_numpy(pad_left(part, min(art.config.max_len, longest))).to(device)
            exclude = torch.from_numpy(pad_left(part, longest)).to(device)
            queries = torch.zeros(len(part), 1, dtype=torch.int64, device=device)
            ids, scores, _ = graph(seq, queries, exclude, torch.tensor([k], device=device))
            for row_i, row_s in zip(ids[:, :k].tolist(), scores[:, :k].tolist(), strict=True):
                out.append([(names[i], v) for i, v in zip(row_i, row_s, strict=True)])
        return out

    return top_k


def memory_mb(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MB.

    Read from /proc rather than getrusage: ru_maxrss survives fork+exec, so a child would
    report its parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_child(args: argparse.Namespace) -> dict:
    """Time one engine on one artifact; runs in its own process."""
    rss_start = memory_mb("VmRSS")
    started = time.perf_counter()
    if args.child == "ort":
        from model.scorer import Scorer

        scorer = Scorer(args.artifact, device=args.device, threads=args.threads)
        top_k, provider = scorer.top_k, scorer.provider
    else:
        top_k = torch_engine(args.artifact, args.threads, args.device)
        provider = f"torch eager ({args.device.upper()})"
    n_items = json.loads((args.artifact / "metadata.json").read_text())["config"]["n_items"]
    load_s = time.perf_counter() - started
    rss_loaded = memory_mb("VmRSS")
    cases = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        inputs = [histories(n_items, batch, seed) for seed in range(args.repeats + 2)]
        top_k(inputs[0], args.k)  # warm-up: first-call allocations are not steady state
        times = []
        for users in inputs[1:]:
            t0 = time.perf_counter()
            top_k(users, args.k)
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        cases[str(batch)] = {
            "median_ms": round(1000 * median, 3),
            "p90_ms": round(1000 * sorted(times)[int(0.9 * len(times))], 3),
            "users_per_s": round(batch / median, 1),
        }
    peak = memory_mb("VmHWM")
    return {
        "engine": args.child,
        "provider": provider,
        "n_items": n_items,
        "load_s": round(load_s, 2),
        "rss_at_start_mb": rss_start,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": peak,
        "batches": cases,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.bench_scorer``."""
    return run(parse_args(argv))


def child_command(args: argparse.Namespace, engine: str, artifact: Path) -> list[str]:
    """The command line that times one engine on one artifact in a fresh process."""
    return [sys.executable, __file__, "--child", engine, "--artifact", str(artifact),
            "--batches", args.batches, "--k", str(args.k), "--repeats", str(args.repeats),
            "--threads", str(args.threads), "--device", args.device]


def run(args: argparse.Namespace) -> int:
    """Build an artifact per size, time every engine in a child process, print and save."""
    if args.child:
        print(json.dumps(run_child(args)))
        return 0
    if args.device == "cuda":
        from model.providers import cuda_unavailable_reason

        reason = cuda_unavailable_reason()
        if reason is not None:
            print(f"bench scorer: --device cuda, but {reason}; run it on a machine with an "
                  "NVIDIA GPU or use --device cpu", file=sys.stderr)
            return 2
    results = []
    load_before = os.getloadavg()  # the machine may be shared: say how busy it was
    with tempfile.TemporaryDirectory(prefix="bench-scorer-") as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            artifact = make_artifact(size, Path(tmp))
            for engine in args.engines.split(","):
                cmd = child_command(args, engine, artifact)
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode:
                    print(done.stderr, file=sys.stderr)
                    return done.returncode
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print_row(results[-1])
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "threads": args.threads,
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "device": args.device,
            "gpu": gpu_name() if args.device == "cuda" else None,
        },
        "k": args.k,
        "history": HISTORY,
        "repeats": args.repeats,
        "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
        print(f"written to {args.out}")
    return 0


def gpu_name() -> str | None:
    """The GPU's name and driver as nvidia-smi gives them, or None without nvidia-smi."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def print_row(r: dict) -> None:
    """One line per engine and size: median latency and throughput per batch size, peak RSS."""
    cells = "  ".join(
        f"b{b}: {c['median_ms']:.1f} ms ({c['users_per_s']:.0f}/s)" for b, c in r["batches"].items()
    )
    print(f"{r['provider']:<26}{r['n_items']:>9} items  {cells}  peak {r['peak_rss_mb']} MB",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
