"""``streamrec train`` and ``streamrec evaluate``.

torch is imported only inside ``train`` (it costs ~2 s): the other commands stay light.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from streamrec.cli.follow import add_follow_arguments, run_follow
from streamrec.errors import ConfigError
from streamrec.settings import Settings

FORMAT_HELP = (
    "s3rec: 'user item item ...' per line; bert4rec: 'user item' per line, in time order; "
    "events: JSON lines {type: click|search, user_id, item_id | query, timestamp?, ...}"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the model commands to the CLI."""
    _register_train(subparsers)
    ev = subparsers.add_parser("evaluate", help="HR/NDCG/MRR of an artifact, FULL and sampled")
    ev.add_argument("--artifact", type=Path, required=True, help="artifact directory")
    _data_args(ev)
    ev.add_argument("--negatives", type=int, default=100, help="sampled protocol size (S3-Rec: 99)")
    ev.add_argument("--split", choices=("test", "val"), default="test")
    ev.add_argument("--seed", type=int, default=0, help="seed of the sampled negatives")
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ev.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    ev.add_argument("--out", type=Path, default=None, help="JSON report path")
    ev.set_defaults(func=run_evaluate)


def _data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--dataset", type=Path, required=required, help="interaction file")
    p.add_argument(
        "--format",
        dest="fmt",
        choices=("s3rec", "bert4rec", "events"),
        required=required,
        help=FORMAT_HELP,
    )


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    t = subparsers.add_parser(
        "train",
        help="train the sequential model, write an artifact (--follow: learn from the stream)",
    )
    _data_args(t, required=False)  # not needed with --follow
    t.add_argument("--out", type=Path, help="artifact directory to write")
    t.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    t.add_argument("--init-from", type=Path, default=None, help="warm-start from this artifact")
    t.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="checkpoint file, written every validation; resumed from if it exists",
    )
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument(
        "--preset",
        choices=("default", "demo"),
        default="default",
        help="demo: about a minute on a 2-core CPU (small data, 1-minute budget)",
    )
    for flag, (kind, _, _, helptext) in TUNING.items():
        choices = {"--loss": ("ce", "sampled"), "--batching": ("length", "random")}.get(flag)
        t.add_argument(flag, type=kind, default=None, choices=choices, help=helptext)
    add_follow_arguments(t)
    t.set_defaults(func=run_train)


# flag -> (type, "model" or "train" config, field, help); unset flags keep the config defaults.
TUNING: dict[str, tuple[type, str, str, str]] = {
    "--epochs": (int, "train", "epochs", "most epochs"),
    "--max-minutes": (float, "train", "max_minutes", "time budget; the best model so far is kept"),
    "--seed": (int, "train", "seed", "seed of everything random"),
    "--lr": (float, "train", "lr", "Adam learning rate"),
    "--batch-size": (int, "train", "batch_size", "users per step"),
    "--patience": (int, "train", "patience", "validations without improvement before stopping"),
    "--eval-every": (int, "train", "eval_every", "epochs between validations"),
    "--val-sample": (int, "train", "val_sample", "validate on this many users (0: all)"),
    "--loss": (str, "train", "loss", "ce: full-softmax cross-entropy; sampled: shared negatives"),
    "--negatives": (int, "train", "n_negatives", "negatives per batch for --loss sampled"),
    "--batching": (str, "train", "batching", "random, or length: similar lengths per batch"),
    "--threads": (int, "train", "threads", "torch CPU threads"),
    "--max-len": (int, "model", "max_len", "most recent items the model reads"),
    "--dim": (int, "model", "dim", "model width"),
    "--layers": (int, "model", "n_layers", "Transformer blocks"),
    "--heads": (int, "model", "n_heads", "attention heads"),
    "--dropout": (float, "model", "dropout", "dropout rate"),
    "--top-k": (
        int,
        "model",
        "top_k",
        "k exported in the graph (default max(100, STREAMREC_TOP_K))",
    ),
}

# --preset demo: the streaming demo's ~70k clicks, trained in about a minute on 2 cores.
DEMO = {"epochs": 40, "max_minutes": 0.75, "patience": 4, "max_len": 50}


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    """Train, export and store an artifact; print where it went and its test metrics."""
    from model.config import ModelConfig, TrainConfig
    from model.data import QueryHashing
    from model.pipeline import TrainJob, run_training

    if args.follow:
        return run_follow(args, settings)
    missing = [flag for flag, value in (("--dataset", args.dataset), ("--format", args.fmt),
                                        ("--out", args.out)) if value is None]
    if missing:
        raise ConfigError(f"train needs {', '.join(missing)} (or --follow to learn from "
                          "STREAMREC_TRAIN_TOPIC)")
    _setup_logging()
    given = {k: v for k, v in vars(args).items() if v is not None}
    picked = {**(DEMO if args.preset == "demo" else {}), **given}
    chosen: dict[str, dict] = {"model": {}, "train": {}}
    for flag, (_, part, field, _) in TUNING.items():
        dest = flag[2:].replace("-", "_")
        if dest in picked:
            chosen[part][field] = picked[dest]
    mc = ModelConfig(
        n_items=1,
        n_query_buckets=settings.token_buckets,
        **{"top_k": max(100, settings.top_k), **chosen["model"]},
    )
    tc = TrainConfig(**chosen["train"])
    key = settings.pseudonym_secret.get_secret_value().encode()
    job = TrainJob(
        args.dataset,
        args.fmt,
        args.out,
        mc,
        tc,
        QueryHashing(key, settings.token_buckets, mc.max_query_tokens),
        args.device,
        args.init_from,
        args.checkpoint,
        args.overwrite,
    )
    art = run_training(job)
    m = art.metadata["metrics"]
    print(f"artifact {art.version} written to {art.path}")
    print(
        f"trained {m['epochs_run']} epochs in {m['train_seconds']:.0f}s "
        f"(best epoch {m['best_epoch']}, stopped by {m['stopped_by']})"
    )
    for split in ("val", "test"):
        if m[split]:
            print(f"{split} FULL: HR@10 {m[split]['HR@10']:.4f}  NDCG@10 {m[split]['NDCG@10']:.4f}")
    return 0


def run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    """Evaluate an artifact; print the table and write the JSON report."""
    from model.data import QueryHashing
    from model.evaluate import evaluate_artifact, format_table

    _setup_logging()
    hashing = QueryHashing(
        settings.pseudonym_secret.get_secret_value().encode(), settings.token_buckets
    )
    report = evaluate_artifact(
        args.artifact,
        args.dataset,
        args.fmt,
        hashing,
        args.negatives,
        args.seed,
        args.split,
        args.device,
        args.threads,
    )
    out = args.out or Path(f"evaluation-{report['artifact']}-{args.dataset.stem}.json")
    out.write_text(json.dumps(report, indent=1))
    print(format_table(report))
    print(f"report written to {out}")
    return 0

