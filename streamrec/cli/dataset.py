"""``streamrec dataset convert|generate`` — public or synthetic data as event JSON lines."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from connectors.datasets.readers import (
    FORMATS,
    Event,
    EventSummary,
    MalformedRow,
    dataset_files,
    dataset_format,
    read_events,
)
from connectors.datasets.synthetic import SyntheticConfig, generate_events
from streamrec.errors import ConfigError
from streamrec.settings import Settings

SHOWN_BAD_ROWS = 20  # with --skip-bad, the first ones are printed, the rest only counted

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@contextlib.contextmanager
def _output(out: str) -> Iterator[TextIO]:
    """Standard output for ``-``; else a file that appears only once it is complete."""
    if out == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(out)
    partial = target.with_name(target.name + ".partial")
    try:
        stream = partial.open("w", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {partial}: {exc.strerror}; pass --out a writable path, "
                          "or - for standard output") from exc
    try:
        with stream:
            yield stream
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)

def write_events(events: Iterable[Event], out: str, what: str) -> EventSummary:
    """Write events as JSON lines to ``out`` and print their summary and speed to stderr."""
    summary, started, closed = EventSummary(), time.perf_counter(), ""
    try:
        with _output(out) as stream:
            for event in events:
                stream.write(_encode(event) + "\n")
                summary.add(event)
    except BrokenPipeError:
        # The reader stopped early (``| head``): not an error, and nothing more to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        closed = " (then the reader closed the output)"
    seconds = time.perf_counter() - started
    print(f"{what}: {summary.describe()}", file=sys.stderr)
    print(f"wrote {summary.events:,} events to {'stdout' if out == '-' else out} in "
          f"{seconds:.2f} s ({summary.events / max(seconds, 1e-9):,.0f} events/s){closed}",
          file=sys.stderr)
    return summary


class _BadRows:
    """With --skip-bad: prints the first malformed rows and counts all of them."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, error: MalformedRow) -> None:
        self.count += 1
        if self.count <= SHOWN_BAD_ROWS:
            print(f"skipped malformed row {error.where}", file=sys.stderr)


def run_convert(args: argparse.Namespace, settings: Settings) -> int:
    """Convert one public dataset into event JSON lines."""
    bad = _BadRows() if args.skip_bad else None
    files = dataset_files(dataset_format(args.format), args.path)
    events = read_events(args.format, args.path, args.limit_users, on_bad=bad)
    names = ", ".join(str(path) for path in files)
    write_events(events, args.out, f"{args.format} ({names})")
    if bad is not None and bad.count:
        print(f"skipped {bad.count:,} malformed rows"
              + (f" (the first {SHOWN_BAD_ROWS} shown)" if bad.count > SHOWN_BAD_ROWS else ""),
              file=sys.stderr)
    return 0


def run_generate(args: argparse.Namespace, settings: Settings) -> int:
    """Generate synthetic events as JSON lines."""
    config = SyntheticConfig(users=args.users, items=args.items, events=args.events,
                             seed=args.seed, search_share=args.search_share)
    write_events(generate_events(config), args.out, f"synthetic (seed {args.seed})")
    return 0


def _positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dataset`` and its actions."""
    parser = sub.add_parser("dataset", help="public datasets or synthetic data as event JSON lines")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    formats = "\n".join(f"  {fmt.name:11s} {fmt.about}; folder: {', '.join(fmt.files)}"
                        for fmt in FORMATS.values())
    convert = actions.add_parser(
        "convert", help="turn a public dataset into event JSON lines",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Turn a public dataset into event JSON lines, ordered by time where it has "
                    f"times, else user by user.\n\nformats:\n{formats}")
    convert.add_argument("--format", required=True, choices=list(FORMATS), help="dataset format")
    convert.add_argument("path", type=Path, metavar="PATH", help="the dataset file or its folder")
    convert.add_argument("--limit-users", type=_positive, metavar="N",
                         help="keep only the first N users in file order")
    convert.add_argument("--skip-bad", action="store_true",
                         help="leave malformed rows out, counting and reporting them")
    convert.set_defaults(func=run_convert)
    generate = actions.add_parser("generate", help="synthetic shop events (no dataset needed)")
    generate.add_argument("--users", type=_positive, required=True, metavar="N")
    generate.add_argument("--items", type=_positive, required=True, metavar="M")
    generate.add_argument("--events", type=_positive, required=True, metavar="E")
    generate.add_argument("--seed", type=int, default=0, metavar="S",
                          help="same seed, same events (default 0)")
    generate.add_argument("--search-share", type=float, default=0.1, metavar="F",
                          help="share of events that are searches (default 0.1)")
    generate.set_defaults(func=run_generate)
    for action in (convert, generate):
        action.add_argument("--out", default="-", metavar="FILE|-",
                            help="where to write the JSON lines (default -: standard output)")
