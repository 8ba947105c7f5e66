"""What the replay commands show and refuse about a range: resolved times, tables, estimates.

Shared by the copy (``streamrec.cli.replay``) and the jobs over the events topic
(``streamrec.cli.replay_jobs``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence

from tqdm import tqdm

from connectors.replay.ranges import RangeError, ReplayRange, resolve_time_range, time_extent
from connectors.replay.spec import format_ms, parse_time

DEFAULT_RATE = 20_000.0  # leaves the brokers room for live traffic unless --rate 0 says otherwise
RELATIVE_TIME = re.compile(r"^-\d+(\.\d+)?(ms|s|m|h|d|w)?$")
TIME_OPTIONS = ("--since", "--until")


def joined_relative_times(argv: Sequence[str]) -> list[str]:
    """``--since -2h`` as ``--since=-2h``: argparse reads a value that starts with '-' (and is
    not a plain negative number) as an unknown option, unless it is joined to its option."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in TIME_OPTIONS and RELATIVE_TIME.match(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def resolve_time(bootstrap: str, topic: str, since_text: str, until_text: str | None
                 ) -> ReplayRange:
    """The offsets of ``topic`` from ``--since`` until ``--until``; refuse an empty range."""
    now = int(time.time() * 1000)
    since, until = parse_time(since_text, now), parse_time(until_text or "now", now)
    rng = resolve_time_range(bootstrap, topic, since, until)
    if rng.total == 0:
        extent = time_extent(bootstrap, topic)
        holds = (f"its records span {format_ms(extent[0])} to {format_ms(extent[1])}"
                 if extent else "it holds no records at all")
        raise RangeError(f"nothing to replay: {topic!r} has no records from "
                         f"{format_ms(since)} until {format_ms(until)}; {holds}. Check "
                         "--since/--until (times without a zone are UTC)")
    return rng


def range_table(rng: ReplayRange, done: dict[int, int]) -> tuple[list[str], int]:
    """Lines of the per-partition table of a range, and the offsets left in it."""
    lines = [f"  {'partition':>9}  {'first':>12}  {'last':>12}  {'records':>10}  {'left':>10}"]
    left_total = 0
    for r in rng.partitions:
        left = r.end - max(r.start, done.get(r.partition, r.start))
        left_total += left
        first, last = (str(r.start), str(r.end - 1)) if r.count else ("-", "-")
        lines.append(f"  {r.partition:>9}  {first:>12}  {last:>12}  {r.count:>10,}  {left:>10,}")
    lines.append(f"  {'total':>9}  {'':>12}  {'':>12}  {rng.total:>10,}  {left_total:>10,}")
    return lines, left_total


def estimate(records: int, rate: float) -> str:
    """How long ``records`` take at ``rate`` events/s (0: uncapped), in words."""
    if not rate:
        return f"{records:,} records uncapped (--rate 0): as fast as the cluster takes them"
    seconds = records / rate
    took = (f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200
            else f"{seconds / 3600:.1f} h")
    return f"{records:,} records at up to {rate:,.0f} events/s: about {took}"


def progress(args: argparse.Namespace, total: int, initial: int, desc: str = "replay") -> tqdm:
    """A progress bar on stderr (none with --quiet or when stderr is not a terminal)."""
    return tqdm(total=total, initial=initial, unit=" ev", unit_scale=True, desc=desc,
                file=sys.stderr, mininterval=0.5, disable=True if args.quiet else None)
