"""``streamrec mirror`` — copy anonymised samples from the private to the public cluster."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from connectors.mirror.transfer import PROGRESS_TOPIC, Mirror, MirrorConfig
from streamrec.components import anonymizer_for
from streamrec.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    config = MirrorConfig(
        private_bootstrap=settings.private_servers, public_bootstrap=settings.public_servers,
        source_topic=args.source or settings.samples_topic,
        target_topic=args.target or settings.train_topic,
        allowlist=settings.mirror_allowlist, progress_topic=args.progress_topic,
        batch_size=args.batch_size, max_rate=args.max_rate, once=args.once,
        idle_exit_s=args.idle_exit, metrics_interval_s=args.metrics_interval)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    mirror = Mirror(config, anonymizer_for(settings))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: mirror.stop())
    stats = mirror.run()
    print(f"mirrored {stats.copied} sample(s) {config.source_topic} -> {config.target_topic}, "
          f"{stats.rejected} rejected to {config.dlq_topic}, {stats.retries} retries")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mirror``."""
    p = sub.add_parser("mirror", help="copy anonymised samples to the public cluster "
                       "(exactly once, privacy-checked)")
    p.add_argument("--once", action="store_true",
                   help="stop when everything present at the start has been copied")
    p.add_argument("--idle-exit", type=float, metavar="S",
                   help="stop after S seconds without new records")
    p.add_argument("--source", help="private topic (default: STREAMREC_SAMPLES_TOPIC); must be "
                   "on STREAMREC_MIRROR_ALLOWLIST")
    p.add_argument("--target", help="public topic (default: STREAMREC_TRAIN_TOPIC)")
    p.add_argument("--progress-topic", default=PROGRESS_TOPIC,
                   help=f"public compacted topic of copy progress (default: {PROGRESS_TOPIC})")
    p.add_argument("--batch-size", type=int, default=1000,
                   help="records per public transaction (default: 1000)")
    p.add_argument("--max-rate", type=float, help="at most this many records per second")
    p.add_argument("--metrics-interval", type=float, default=5.0, metavar="S",
                   help="seconds between progress log lines (default: 5)")
    p.set_defaults(func=run)
