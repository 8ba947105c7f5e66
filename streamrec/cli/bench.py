"""``streamrec bench NAME [ARGS ...]`` — run ``benchmarks/bench_NAME.py`` of a source checkout.

Each benchmark is a module with ``main(argv) -> int`` and its own options (``--help``); this
command imports ``benchmarks.bench_NAME`` and hands it every argument after NAME. The benchmarks
are not installed with streamrec: they are imported from the current directory's checkout
(``python -m streamrec bench NAME``, like ``python -m benchmarks.bench_NAME``), or from the
checkout an editable install points to (the ``streamrec`` script, started from anywhere).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from streamrec.errors import ConfigError
from streamrec.settings import Settings

CHECKOUT = Path(__file__).resolve().parents[2]  # the source tree, when streamrec runs from one

BENCHMARKS = {
    "scorer": "scorer latency/throughput, ORT vs torch eager",
    "pipeline": "worker vs naive per-event baseline on real brokers (events/s, latency)",
    "replay": "replay throughput, uncapped and capped",
    "mirror": "mirror samples/s private -> public",
    "loop": "freshness: new item's first events to a live model that knows it",
    "swap": "worker latency before, during and after a hot model swap",
    "failover": "partitions' pause when a worker is killed (or restarted), logs in an outage",
    "replay_live": "worker p99 alone, beside a capped and an uncapped replay",
    "devices": "the served model on CUDA against the CPU: agreement and latency (needs a GPU)",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` with one subcommand per benchmark."""
    bench = sub.add_parser("bench", help="benchmarks (run from a source checkout)",
                           description="Run a benchmark of this source checkout; every "
                                       "argument after NAME is the benchmark's own.")
    names = bench.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    for name, text in BENCHMARKS.items():
        # No options of its own: every argument after NAME, those that start with '-' too
        # (argparse's REMAINDER would leave a leading option unclaimed), is the benchmark's.
        p = names.add_parser(name, help=text, add_help=False, prefix_chars="+")
        p.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="ARGS",
                       help=f"options of the benchmark (streamrec bench {name} --help)")
        p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Import ``benchmarks.bench_<name>`` and run its ``main`` with the remaining arguments."""
    module = benchmark(args.benchmark)
    # A benchmark's parser names itself after sys.argv[0]: its usage line then reads as typed.
    program, sys.argv[0] = sys.argv[0], f"streamrec bench {args.benchmark}"
    try:
        return int(module.main(args.bench_args) or 0)
    finally:
        sys.argv[0] = program


def benchmark(name: str) -> ModuleType:
    """The module ``benchmarks.bench_<name>``, or ConfigError outside a source checkout."""
    module_name = f"benchmarks.bench_{name}"
    if (importlib.util.find_spec("benchmarks") is None
            and (CHECKOUT / "benchmarks" / "__init__.py").is_file()):
        sys.path.insert(0, str(CHECKOUT))  # an editable install: its checkout's benchmarks
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks", module_name):
            raise  # the benchmark itself needs a module that is missing
        raise ConfigError(f"no module {module_name}: the benchmarks are not installed with "
                          f"streamrec; run `python -m streamrec bench {name} ...` from the "
                          "root of a source checkout") from None
