"""Replay speed: uncapped throughput (idempotent and transactional) and capped-rate accuracy.

Fills a fresh topic with N real user_event records (Avro, ~100 bytes, keyed by user), then
copies it with the same reader, writer and copy loop that ``streamrec replay`` runs, each case
into its own fresh topic. Throughput counts until the last record is delivered (flushed or
committed). The topics are deleted at the end unless --keep.

    python -m benchmarks.bench_replay --events 200000 --out benchmarks/results/replay.json
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
from connectors.replay.history import (
    RangeReader,
    ReplayRange,
    TargetWriter,
    copy_range,
    resolve_offset_range,
)
from connectors.replay.ranges import partition_count
from schemas import default_codec
from streamrec.settings import load_settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=200_000, help="records in the source topic")
    p.add_argument("--users", type=int, default=10_000, help="distinct keys")
    p.add_argument("--partitions", type=int, default=4, help="partitions of every topic")
    p.add_argument(
        "--rates",
        default="5000,20000",
        help="capped rates to check, events/s (each runs ~--capped-seconds)",
    )
    p.add_argument("--capped-seconds", type=float, default=5.0, help="length of a capped run")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the private cluster)")
    p.add_argument("--out", type=Path, help="write the JSON results here")
    p.add_argument("--keep", action="store_true", help="keep the benchmark's topics")
    return p.parse_args(argv)


def fill(bootstrap: str, topic: str, events: int, users: int) -> tuple[float, float]:
    """Produce ``events`` real encoded user events; returns (seconds, mean value bytes)."""
    codec, size = default_codec(), 0
    started = time.monotonic()
    with RecordProducer(bootstrap) as producer:
        for i in range(events):
            user = f"user-{i % users:06d}"
            value = codec.encode(
                "user_event",
                {
                    "event_id": uuid.uuid4().hex,
                    "user_id": user,
                    "type": "click",
                    "item_id": f"item-{(i * 7919) % 50_000:06d}",
                    "query": None,
                    "session_id": f"s-{i // 20:08d}",
                    "timestamp": 1_714_564_800_000 + i,
                    "context": {"page": "pdp"},
                },
            )
            size += len(value)
            producer.produce(topic, user.encode(), value)
    return time.monotonic() - started, size / max(events, 1)


def source_range(bootstrap: str, source: str, limit: int | None) -> ReplayRange:
    """All of ``source``, or its first ``limit`` records spread evenly over its partitions."""
    count = partition_count(bootstrap, source) or 0
    full = resolve_offset_range(bootstrap, source, {p: (0, None) for p in range(count)})
    if limit is None:
        return full
    share = -(-limit // count)
    return ReplayRange.from_dict(
        source, count, {r.partition: (r.start, min(r.end, share)) for r in full.partitions}
    )


def copy_case(
    bootstrap: str,
    source: str,
    target: str,
    *,
    rate: float | None,
    transactional: bool,
    limit: int | None = None,
) -> dict[str, Any]:
    """Copy ``source`` (or ``limit`` records of it) into ``target`` once; the measured figures."""
    rng = source_range(bootstrap, source, limit)
    ensure_topics(bootstrap, [TopicSpec(target, rng.partition_count)])
    txn_id = f"bench-replay-{uuid.uuid4().hex[:8]}" if transactional else None
    reader = RangeReader(bootstrap, rng, group_id=txn_id)
    try:
        with TargetWriter(bootstrap, target, transactional_id=txn_id) as writer:
            report = copy_range(reader, writer, rate=rate)
    finally:
        reader.close()
    return {
        "records": report.read,
        "seconds": round(report.seconds, 3),
        "events_per_s": round(report.rate),
        "commits": report.commits,
        "rate_cap": rate,
        "accuracy": round(report.rate / rate, 4) if rate else None,
        "transactional": transactional,
    }


def run_cases(
    args: argparse.Namespace, bootstrap: str, source: str, topics: list[str]
) -> list[dict[str, Any]]:
    """Every case, each into its own fresh topic."""
    cases: list[tuple[str, float | None, bool, int | None]] = [
        ("uncapped, idempotent", None, False, None),
        ("uncapped, transactional (--resume)", None, True, None),
    ]
    for cap in (float(r) for r in args.rates.split(",") if r):
        cases.append(
            (f"capped {cap:,.0f}/s, transactional", cap, True, int(cap * args.capped_seconds))
        )
    results = []
    for name, rate, transactional, limit in cases:
        target = f"{source}.copy{len(topics)}"
        topics.append(target)
        result = copy_case(
            bootstrap, source, target, rate=rate, transactional=transactional, limit=limit
        )
        results.append({"case": name, **result})
        print(f"  {name}: {result['events_per_s']:,} events/s", file=sys.stderr)
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    """The results as a plain text table."""
    print(f"{'case':<38} {'records':>9} {'seconds':>8} {'events/s':>10} {'cap':>8} {'accuracy':>9}")
    for r in results:
        cap = f"{r['rate_cap']:,.0f}" if r["rate_cap"] else "-"
        accuracy = f"{r['accuracy']:.1%}" if r["accuracy"] else "-"
        print(
            f"{r['case']:<38} {r['records']:>9,} {r['seconds']:>8.2f} "
            f"{r['events_per_s']:>10,} {cap:>8} {accuracy:>9}"
        )


def main(argv: list[str] | None = None) -> int:
    """Fill, copy each case, print the table, write the JSON."""
    args = parse_args(argv)
    bootstrap = args.bootstrap or load_settings().private_servers
    source = f"bench-replay-{uuid.uuid4().hex[:8]}"
    topics = [source]
    ensure_topics(bootstrap, [TopicSpec(source, args.partitions)])
    try:
        print(f"filling {source} with {args.events:,} events ...", file=sys.stderr)
        fill_s, value_bytes = fill(bootstrap, source, args.events, args.users)
        results = run_cases(args, bootstrap, source, topics)
    finally:
        if not args.keep:
            delete_topics(bootstrap, topics)
    print_table(results)
    doc = {
        "benchmark": "replay",
        "events": args.events,
        "value_bytes": round(value_bytes, 1),
        "partitions": args.partitions,
        "fill_seconds": round(fill_s, 2),
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
