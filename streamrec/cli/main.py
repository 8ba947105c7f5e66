"""``streamrec`` — the one command line; each subcommand lives in a module of this package.

Errors are handled here and only here: a ``StreamrecError`` (see ``streamrec.errors``) is printed
as one line, ``streamrec <command>: <message>``, and ends the command with its exit code. An
exception that no module turned into one is still printed as one line; ``python -X dev -m
streamrec ...`` shows its traceback instead.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable, Sequence

from connectors.kafka.clients import KAFKA_LOG, check_on_first_use
from connectors.kafka.logbound import RepeatFilter
from connectors.kafka.reach import reach
from streamrec.cli.replay_ranges import joined_relative_times
from streamrec.errors import StreamrecError
from streamrec.settings import Settings, settings_from_env

# Each module exposes ``register(subparsers)``; its parsers set ``func(args, settings) -> int``.
COMMAND_MODULES = (
    "streamrec.cli.broker",
    "streamrec.cli.produce",
    "streamrec.cli.subscribe",
    "streamrec.cli.dataset",
    "streamrec.cli.model",
    "streamrec.cli.bench",
    "streamrec.cli.worker",
    "streamrec.cli.replay",
    "streamrec.cli.mirror",
    "streamrec.cli.audit",
    "streamrec.cli.models",
    "streamrec.cli.demo",
)

Command = Callable[[argparse.Namespace, Settings], int | None]


class Parser(argparse.ArgumentParser):
    """argparse, with relative times as option values (``--since -2h``; see
    ``streamrec.cli.replay_ranges.joined_relative_times``)."""

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        argv = sys.argv[1:] if args is None else args
        return super().parse_known_args(joined_relative_times(argv), namespace)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every available subcommand registered."""
    parser = Parser(
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
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.command, args.func, args)


def run_command(name: str, func: Command, args: argparse.Namespace) -> int:
    """Read the settings and run ``func``; turn what it raises into one line and an exit code."""
    bounded = RepeatFilter()  # librdkafka's lines: a few of each kind per window, then a count
    try:
        settings = settings_from_env()
        if name != "worker":  # the worker bounds its logs itself, and counts what it leaves out
            KAFKA_LOG.addFilter(bounded)
        # The first client of each cluster waits for it to answer, at most the connect timeout:
        # one line, early, when it cannot be reached (after the command checked its arguments).
        check_on_first_use(functools.partial(reach, names=settings.cluster_names(),
                                             timeout_s=settings.connect_timeout_s))
        return int(func(args, settings) or 0)
    except StreamrecError as exc:
        _say(name, "; ".join([str(exc), *getattr(exc, "__notes__", ())]))
        return exc.exit_code
    except KeyboardInterrupt:
        _say(name, "interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the last safety net: one line, never a traceback
        if sys.flags.dev_mode:
            raise
        _say(name, f"{type(exc).__name__}: {exc} (an error streamrec does not explain yet; "
                   f"`python -X dev -m streamrec {name} ...` shows where it came from)")
        return 1
    finally:
        check_on_first_use(None)
        KAFKA_LOG.removeFilter(bounded)


def _say(name: str, message: str) -> None:
    print(f"streamrec {name}: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
