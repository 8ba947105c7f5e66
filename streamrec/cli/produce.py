"""``streamrec produce FILE|-`` — validate JSON event lines and produce them to the events topic."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from typing import IO

from tqdm import tqdm

from connectors.sdk.ingest import BadLines, IngestReport, ingest
from connectors.sdk.pacing import Pacer
from connectors.sdk.producer import EventProducer
from streamrec.errors import ConfigError
from streamrec.settings import Settings
from streamrec.topology import ensure_private_topics

MAX_REPORTED = 50


def _open(path: str) -> tuple[IO[bytes], int | None]:
    if path == "-":
        return sys.stdin.buffer, None
    try:
        return open(path, "rb"), os.path.getsize(path)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _lines_with_progress(stream: IO[bytes], size: int | None, enabled: bool) -> Iterator[bytes]:
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="validating", file=sys.stderr,
               disable=not enabled, mininterval=0.5)
    with bar:
        for line in stream:
            bar.update(len(line))
            yield line


def run(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = args.bootstrap or settings.private_servers
    topic = args.topic or settings.events_topic
    ensure_private_topics(settings, bootstrap)
    stream, size = _open(args.file)
    show = not args.quiet and (size is None or size > 1_000_000) and sys.stderr.isatty()
    pace = Pacer(args.rate) if args.rate else None
    with stream:
        producer = EventProducer(bootstrap, topic)
        report = ingest(
            _lines_with_progress(stream, size, show), producer,
            dlq_topic=settings.dlq_topic if args.dlq else None,
            source=args.file, pace=pace,
        )
    _print_summary(report, topic, args)
    if report.bad and not args.dlq:
        raise BadLines(
            f"{len(report.bad)} bad line(s) in {args.file}; nothing was produced. Fix them and "
            "run again, or pass --dlq to produce the good lines and dead-letter the bad ones."
        )
    return 0


def _print_summary(report: IngestReport, topic: str, args: argparse.Namespace) -> None:
    for bad in report.bad[:MAX_REPORTED]:
        print(f"{args.file}:{bad.line_no}: {bad.reason}", file=sys.stderr)
    if len(report.bad) > MAX_REPORTED:
        print(f"... and {len(report.bad) - MAX_REPORTED} more bad lines", file=sys.stderr)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.by_type.items())) or "no events"
    print(
        f"read {report.lines} lines: {kinds} from {len(report.users)} users; "
        f"produced {report.produced} to {topic!r} in {report.seconds:.1f} s "
        f"({report.rate:,.0f} events/s); bad lines: {len(report.bad)}"
        + (f", dead-lettered: {report.dead_lettered}" if args.dlq else ""),
        file=sys.stderr,
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``produce``."""
    p = sub.add_parser("produce", help="produce JSON event lines (file or - for stdin)")
    p.add_argument("file", metavar="FILE|-", help="JSON lines, one event per line")
    p.add_argument("--topic", help="target topic (default: STREAMREC_EVENTS_TOPIC = events)")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the private cluster)")
    p.add_argument("--dlq", action="store_true",
                   help="produce the good lines and send bad ones to the dead-letter topic")
    p.add_argument("--rate", type=float, help="pace production at this many events/s")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
