"""Mirror speed: anonymised samples per second from the private to the public local cluster.

Anonymises N synthetic events (timing the anonymizer alone), fills a fresh private topic with the
samples, then runs ``Mirror`` with ``once`` for each batch size (records per public transaction)
into its own fresh public topic and progress topic. A run's time includes its start (fencing,
progress read); the start alone is measured by running the same mirror again, with nothing left
to copy. The topics are deleted at the end unless --keep.

    python -m benchmarks.bench_mirror --samples 100000 --out benchmarks/results/mirror.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from connectors.kafka.producer import RecordProducer
from connectors.kafka.topics import TopicSpec, delete_topics, ensure_topics
from connectors.mirror.transfer import Mirror, MirrorConfig
from connectors.privacy.anonymizer import Anonymizer
from schemas import default_codec
from streamrec.settings import load_settings

SECRET = b"bench-mirror-secret"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100_000, help="samples in the source topic")
    p.add_argument("--users", type=int, default=10_000, help="distinct users")
    p.add_argument(
        "--batch-sizes",
        default="500,2000,10000",
        help="records per public transaction, one run each",
    )
    p.add_argument("--partitions", type=int, default=4, help="partitions of every topic")
    p.add_argument("--out", type=Path, help="write the JSON results here")
    p.add_argument("--keep", action="store_true", help="keep the benchmark's topics")
    return p.parse_args(argv)


def anonymizer() -> Anonymizer:
    """The anonymizer with the defaults of the settings."""
    return Anonymizer(SECRET, 1, n_buckets=4096, time_bucket_ms=3_600_000, sample_rate=1.0)


def fill(bootstrap: str, topic: str, samples: int, users: int) -> dict[str, float]:
    """Anonymise synthetic events (every 4th a search) and produce the samples to ``topic``."""
    anon, codec = anonymizer(), default_codec()
    events = [
        {
            "event_id": uuid.uuid4().hex,
            "user_id": f"user-{i % users:06d}",
            "type": "search" if i % 4 == 0 else "click",
            "item_id": f"item-{i % 50_000}",
            "query": f"wireless headphones under {i % 300} euro",
            "session_id": None,
            "timestamp": 1_714_564_800_000 + i * 1000,
            "context": {"ip": "198.51.100.7", "user_agent": "Mozilla/5.0"},
        }
        for i in range(samples)
    ]
    started = time.perf_counter()
    records = [anon.anonymize(event, seq=i) for i, event in enumerate(events)]
    anonymize_s = time.perf_counter() - started
    size = 0
    started = time.perf_counter()
    with RecordProducer(bootstrap) as producer:
        for record in records:
            value = codec.write(record)
            size += len(value)
            producer.produce(topic, record.pseudonym.encode(), value)
    return {
        "anonymize_per_s": round(samples / anonymize_s),
        "fill_seconds": round(time.perf_counter() - started, 2),
        "value_bytes": round(size / max(samples, 1), 1),
    }


def mirror_case(private: str, public: str, source: str, batch: int) -> dict[str, Any]:
    """Copy all of ``source`` with ``batch`` records per transaction; the measured figures."""
    target = f"{source}.public.b{batch}"
    config = MirrorConfig(
        private,
        public,
        source,
        target,
        allowlist=(source,),
        progress_topic=f"_progress-{target}",
        batch_size=batch,
        once=True,
        metrics_interval_s=3600,
    )
    started = time.perf_counter()
    stats = Mirror(config, anonymizer()).run()
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    again = Mirror(config, anonymizer()).run()
    start_s = time.perf_counter() - started
    assert again.copied == 0, "a second run must find everything copied"
    return {
        "batch_size": batch,
        "copied": stats.copied,
        "transactions": stats.transactions,
        "seconds": round(seconds, 3),
        "samples_per_s": round(stats.copied / seconds),
        "start_seconds": round(start_s, 3),
        "samples_per_s_after_start": round(stats.copied / max(seconds - start_s, 1e-9)),
        "target": target,
    }


def main(argv: list[str] | None = None) -> int:
    """Fill, mirror each batch size, print the table, write the JSON."""
    args = parse_args(argv)
    settings = load_settings()
    private, public = settings.private_servers, settings.public_servers
    source = f"bench-mirror-{uuid.uuid4().hex[:8]}"
    ensure_topics(private, [TopicSpec(source, args.partitions)])
    results: list[dict[str, Any]] = []
    try:
        print(f"filling {source} with {args.samples:,} samples ...", file=sys.stderr)
        filled = fill(private, source, args.samples, args.users)
        for batch in (int(b) for b in args.batch_sizes.split(",") if b):
            results.append(mirror_case(private, public, source, batch))
            print(f"  batch {batch}: {results[-1]['samples_per_s']:,} samples/s", file=sys.stderr)
    finally:
        if not args.keep:
            delete_topics(private, [source])
            delete_topics(
                public,
                [r["target"] for r in results] + [f"_progress-{r['target']}" for r in results],
            )
    print(f"anonymizer alone: {filled['anonymize_per_s']:,} events/s (one core)")
    print(
        f"{'batch':>7} {'copied':>9} {'txns':>6} {'seconds':>8} {'samples/s':>10} "
        f"{'start s':>8} {'after start/s':>14}"
    )
    for r in results:
        print(
            f"{r['batch_size']:>7,} {r['copied']:>9,} {r['transactions']:>6,} "
            f"{r['seconds']:>8.2f} {r['samples_per_s']:>10,} {r['start_seconds']:>8.2f} "
            f"{r['samples_per_s_after_start']:>14,}"
        )
    doc = {
        "benchmark": "mirror",
        "samples": args.samples,
        "users": args.users,
        "partitions": args.partitions,
        **filled,
        "host": platform.node(),
        "python": platform.python_version(),
        "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
