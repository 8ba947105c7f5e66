"""The ``streamrec`` command line: ``main`` parses, reads the settings once and runs a command.

Each subcommand lives in a module of this package with a ``register(subparsers)`` function.
"""

from streamrec.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
