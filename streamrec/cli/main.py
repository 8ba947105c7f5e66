"""``streamrec`` — the one command line; each subcommand lives in a module of this package."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from streamrec.errors import StreamrecError
from streamrec.settings import Settings, load_settings

# Each module exposes ``register(subparsers)``; its parsers set ``func(args, settings) -> int``.
COMMAND_MODULES = (
    "streamrec.cli.broker",
    "streamrec.cli.produce",
    "streamrec.cli.subscribe",
    "streamrec.cli.dataset",
    "streamrec.cli.model",
    "streamrec.cli.worker",
    "streamrec.cli.replay",
    "streamrec.cli.mirror",
    "streamrec.cli.audit",
    "streamrec.cli.models",
    "streamrec.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="streamrec",
        description="Streaming recommender: Kafka events in, live recommendations out.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command not built into this version
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, read the settings once, run the subcommand."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "bench_args", None), list):
        args.bench_args = extra + args.bench_args  # a benchmark's own options, --help included
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        settings: Settings = load_settings()
    except ValidationError as exc:
        print(f"streamrec: invalid STREAMREC_* setting:\n{exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, settings) or 0)
    except StreamrecError as exc:
        print(f"streamrec {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"streamrec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
