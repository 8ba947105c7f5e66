"""Follow mode of training: ``streamrec train --follow`` (also ``python -m streamrec.cli.follow``).

The incremental trainer of the public side (``connectors.training.loop``): it reads
STREAMREC_TRAIN_TOPIC on the public cluster, trains windows, and publishes signed releases to
STREAMREC_RELEASES_TOPIC, storing artifacts in STREAMREC_MODEL_STORE (a directory or
s3://BUCKET/PREFIX) and signing with STREAMREC_SIGNING_KEY_PATH. ``add_follow_arguments`` adds
its options to a parser; options that the parser already has (e.g. ``--dim`` of ``streamrec
train``) are shared, not added twice.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from streamrec.errors import ConfigError
from streamrec.settings import Settings

# Shape and optimisation of follow mode when the shared flags are not given: small and quick,
# since a window is trained every minute or so on a CPU.
FOLLOW_DEFAULTS = {"dim": 32, "layers": 1, "heads": 1, "max_len": 30, "dropout": 0.2,
                   "epochs": 2, "lr": 5e-3, "batch_size": 128, "seed": 42, "threads": 2}
SHARED = {
    "--dim": (int, "model width of a model started from scratch"),
    "--layers": (int, "Transformer blocks of a model started from scratch"),
    "--heads": (int, "attention heads of a model started from scratch"),
    "--max-len": (int, "most recent items the model reads (model started from scratch)"),
    "--dropout": (float, "dropout rate (model started from scratch)"),
    "--epochs": (int, "with --follow: passes over each window (default 2)"),
    "--lr": (float, "Adam learning rate (with --follow default 5e-3)"),
    "--batch-size": (int, "users per step"),
    "--seed": (int, "seed of everything random"),
    "--threads": (int, "torch CPU threads"),
}


def add_follow_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the follow-mode options; flags the parser already defines are left as they are."""
    g = parser.add_argument_group("follow mode (incremental training from the public stream)")
    _add(g, "--follow", action="store_true",
         help="train continuously on STREAMREC_TRAIN_TOPIC and publish releases")
    _add(g, "--window-clicks", type=int, default=2000,
         help="train a window when this many new clicks arrived (default 2000)")
    _add(g, "--window-seconds", type=float, default=60.0,
         help="...or this many seconds after the first of them (default 60)")
    _add(g, "--min-clicks", type=int, default=50,
         help="never train a window on fewer new clicks (default 50)")
    _add(g, "--holdout-share", type=float, default=0.2,
         help="newest share of a window's clicks used to compare candidate and current model")
    _add(g, "--replay-ratio", type=float, default=1.0,
         help="users of older data replayed per user with new data (default 1.0)")
    _add(g, "--tolerance", type=float, default=0.0,
         help="held-out NDCG@10 a candidate may lose and still be released (default 0)")
    _add(g, "--max-windows", type=int, default=None, help="stop after this many windows")
    _add(g, "--idle-exit", type=float, default=None, metavar="S",
         help="stop after S seconds without new samples (and no window due)")
    _add(g, "--model-name", default="streamrec", help="release key and trainer identity")
    _add(g, "--init-from", type=Path, default=None,
         help="start from this artifact when nothing has been released yet")
    _add(g, "--device", choices=("auto", "cpu", "cuda"), default="cpu",
         help="torch device of the training")
    for flag, (kind, text) in SHARED.items():
        _add(g, flag, type=kind, default=None, help=text)


def _add(group: argparse._ArgumentGroup, flag: str, **kwargs: object) -> None:
    """Add an option unless the parser has it already (argparse raises on a second one)."""
    try:
        group.add_argument(flag, **kwargs)  # type: ignore[arg-type]
    except argparse.ArgumentError:
        pass


def _int(args: argparse.Namespace, name: str) -> int:
    value = getattr(args, name, None)
    return int(FOLLOW_DEFAULTS[name] if value is None else value)


def _float(args: argparse.Namespace, name: str) -> float:
    value = getattr(args, name, None)
    return float(FOLLOW_DEFAULTS[name] if value is None else value)


def trainer_config(args: argparse.Namespace, settings: Settings):
    """The TrainerConfig of the parsed options and the settings."""
    from connectors.training.loop import TrainerConfig
    from model.config import ModelConfig, TrainConfig
    from streamrec.components import model_store_for

    model = ModelConfig(n_items=1, max_len=_int(args, "max_len"), dim=_int(args, "dim"),
                        n_layers=_int(args, "layers"), n_heads=_int(args, "heads"),
                        dropout=_float(args, "dropout"), n_query_buckets=settings.token_buckets,
                        top_k=max(100, settings.top_k))
    train = TrainConfig(epochs=_int(args, "epochs"), lr=_float(args, "lr"),
                        batch_size=_int(args, "batch_size"), seed=_int(args, "seed"),
                        threads=_int(args, "threads"))
    return TrainerConfig(
        public_bootstrap=settings.public_servers, train_topic=settings.train_topic,
        releases_topic=settings.releases_topic, store=model_store_for(settings),
        signing_key=settings.signing_key_path, model=model, train=train,
        model_name=args.model_name, init_from=args.init_from, window_clicks=args.window_clicks,
        window_seconds=args.window_seconds, min_clicks=args.min_clicks,
        holdout_share=args.holdout_share, replay_ratio=args.replay_ratio,
        tolerance=args.tolerance, device=args.device)


def run_follow(args: argparse.Namespace, settings: Settings) -> int:
    """Run the incremental trainer until stopped; print what it released."""
    from connectors.training.loop import Trainer

    if not 0.0 <= args.holdout_share < 1.0 or args.window_clicks < args.min_clicks:
        raise ConfigError("need 0 <= --holdout-share < 1 and --window-clicks >= --min-clicks")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    trainer = Trainer(trainer_config(args, settings))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: trainer.stop())
    stats = trainer.run(args.max_windows, args.idle_exit)
    print(f"{stats.windows} window(s): released {len(stats.released)} "
          f"{' '.join(stats.released)}; held back {len(stats.held_back)}; "
          f"{stats.consumed} samples read, {stats.duplicates} duplicates")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run follow mode on its own, with the settings read from the environment."""
    from streamrec.cli.main import run_command  # main imports this module: not at the top

    parser = argparse.ArgumentParser(prog="streamrec-follow", description=__doc__)
    add_follow_arguments(parser)
    return run_command("train --follow", run_follow, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
