"""``streamrec subscribe`` — print decoded records of a topic as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys

from connectors.sdk.subscriber import Subscriber
from streamrec.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = args.bootstrap or settings.servers(args.cluster)
    topic = args.topic or settings.recommendations_topic
    sub = Subscriber(bootstrap, topic, user_id=args.user, from_beginning=args.from_beginning,
                     max_records=args.max, idle_timeout_s=args.timeout, group_id=args.group)
    count = 0
    try:
        for received in sub:
            sys.stdout.write(json.dumps(received.to_json(), separators=(",", ":")) + "\n")
            count += 1
            if count % 1000 == 0:
                sys.stdout.flush()
    except BrokenPipeError:
        return 0

    sys.stdout.flush()
    if sub.undecodable:
        print(f"skipped {sub.undecodable} undecodable record(s); last: {sub.last_error}",
              file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``subscribe``."""
    p = sub.add_parser("subscribe", help="print a topic's records as JSON lines")
    p.add_argument("--topic", help="topic (default: recommendations)")
    p.add_argument("--cluster", choices=["private", "public"], default="private")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (overrides --cluster)")
    p.add_argument("--user", help="only records keyed by this user id")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    p.add_argument("--max", type=int, help="stop after this many records")
    p.add_argument("--timeout", type=float, help="stop after this many seconds without records")
    p.add_argument("--group", help="consumer group (commits offsets; default: anonymous)")
    p.set_defaults(func=run)
