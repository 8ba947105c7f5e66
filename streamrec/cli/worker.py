"""``streamrec worker`` — run one stream worker (several may share the consumer group)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from streamrec.errors import ConfigError
from streamrec.settings import Settings
from streamrec.topology import ensure_private_topics


def run(args: argparse.Namespace, settings: Settings) -> int:
    overrides = {k: v for k, v in (("web_port", args.web_port), ("model_dir", args.model),
                                   ("log_level", args.loglevel)) if v is not None}
    if overrides:
        settings = settings.model_copy(update=overrides)
    if settings.model_dir is not None and not settings.model_dir.exists():
        raise ConfigError(f"model artifact {settings.model_dir} does not exist; train one with "
                          "`streamrec train ... --out DIR` or leave STREAMREC_MODEL_DIR unset "
                          "to serve popularity only")
    ensure_private_topics(settings)
    from faust.worker import Worker as FaustWorker

    from streamrec.components import anonymizer_for
    from streams.app import create_worker

    # Kafka I/O threads and the scorer thread hand the GIL back and forth on every socket call;
    # a short switch interval keeps the event loop from waiting 5 ms for each hand-over.
    sys.setswitchinterval(0.0005)
    worker = create_worker(settings, anonymizer_for(settings))
    logging.getLogger("streamrec").setLevel(settings.log_level.upper())
    FaustWorker(worker.app, loglevel=settings.log_level.upper(), quiet=True,
                redirect_stdouts=False).execute_from_commandline()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``worker``."""
    p = sub.add_parser("worker", help="run a stream worker (Faust) until Ctrl-C")
    p.add_argument("--model", type=Path,
                   help="model artifact directory (default: STREAMREC_MODEL_DIR)")
    p.add_argument("--web-port", type=int, help="HTTP port (default: STREAMREC_WEB_PORT)")
    p.add_argument("--loglevel", choices=["debug", "info", "warning", "error"],
                   help="default: STREAMREC_LOG_LEVEL (warning)")
    p.set_defaults(func=run)
