"""``streamrec models`` — the private side's models: sync releases, list, promote, roll back.

Models live in ``STREAMREC_DATA_DIR/models-private``; workers serve
``STREAMREC_MODEL_DIR=<data_dir>/models-private/current`` and hot-swap when it is re-pointed.
Releases are read from STREAMREC_RELEASES_TOPIC on the public cluster and verified with
STREAMREC_VERIFY_KEY_PATH. No torch is imported by these commands.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from streamrec.settings import Settings

SHOWN_METRICS = ("hr@10", "ndcg@10", "new_items", "items")


def models_dir(settings: Settings) -> Path:
    """The private model directory of the settings."""
    return settings.data_dir / "models-private"


def _sync(settings: Settings, args: argparse.Namespace):
    from connectors.releases.sync import ModelSync, SyncConfig
    from streamrec.components import s3_options_for

    return ModelSync(SyncConfig(
        public_bootstrap=settings.public_servers, releases_topic=settings.releases_topic,
        models_dir=models_dir(settings), verify_key=settings.verify_key_path,
        model_name=getattr(args, "model_name", "streamrec"), device=settings.scoring_device,
        s3=s3_options_for(settings)))


def run_sync(args: argparse.Namespace, settings: Settings) -> int:
    """Follow the releases: verify, canary and activate each new one."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sync = _sync(settings, args)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sync.stop())
    stats = sync.run(once=args.once, idle_exit_s=args.idle_exit)
    print(f"accepted {len(stats.accepted)} {' '.join(stats.accepted)}; refused "
          f"{len(stats.refused)} {' '.join(stats.refused)}; current {stats.current}")
    return 0


def model_table(settings: Settings) -> dict[str, Any]:
    """Versions held (with metrics), the current one, refused ones with their reasons."""
    from connectors.releases.registry import PrivateModels

    models = PrivateModels(models_dir(settings))
    registry = models.registry()
    current = models.current()
    versions = [{"version": v, "current": v == current,
                 # A model adopted on the private side (the demo's first) has no release
                 # record of the trainer's: no parent and perhaps no metrics.
                 "parent_version": r["release"].get("parent_version"),
                 "rolled_back": v in registry["rolled_back"], "synced_at": r["at"],
                 "metrics": {k: (r["release"].get("metrics") or {}).get(k)
                             for k in SHOWN_METRICS}}
                for v, r in sorted(registry["versions"].items())]
    refused = [{"version": v, "reason": r["reason"], "at": r["at"]}
               for v, r in sorted(registry["refused"].items())]
    return {"current": current, "versions": versions, "refused": refused,
            "history": registry["history"]}


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the private models (a table, or JSON with --json)."""
    table = model_table(settings)
    if args.json:
        print(json.dumps(table, indent=1))
        return 0
    print(f"{'':2}{'version':<28}{'parent':<28}{'HR@10':>8}{'NDCG@10':>9}{'items':>7}")
    for v in table["versions"]:
        m = v["metrics"]
        mark = "*" if v["current"] else ("r" if v["rolled_back"] else " ")
        print(f"{mark:2}{v['version']:<28}{v['parent_version'] or '-':<28}"
              f"{_num(m['hr@10']):>8}{_num(m['ndcg@10']):>9}{_num(m['items'], 0):>7}")
    for r in table["refused"]:
        print(f"refused {r['version']}: {r['reason']}")
    if table["current"] is None:
        print("no current model: run `streamrec models sync`")
    return 0


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run_promote(args: argparse.Namespace, settings: Settings) -> int:
    """Verify a held version again and make it current."""
    _sync(settings, args).promote(args.version)
    print(f"current -> {args.version}")
    return 0


def run_rollback(args: argparse.Namespace, settings: Settings) -> int:
    """Point current back to the previous good version."""
    version = _sync(settings, args).rollback()
    print(f"current -> {version} (rolled back)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``models`` with ``sync``, ``list``, ``promote``, ``rollback`` and ``keygen``."""
    p = sub.add_parser("models", help="private side: sync released models, list, promote, "
                       "roll back")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = actions.add_parser("sync", help="follow the releases: verify, canary, re-point current")
    s.add_argument("--once", action="store_true", help="stop at the end of the releases topic")
    s.add_argument("--idle-exit", type=float, metavar="S",
                   help="stop after S seconds without a new release")
    s.add_argument("--model-name", default="streamrec", help="which model's releases")
    s.set_defaults(func=run_sync)
    ls = actions.add_parser("list", help="versions held, metrics, current, refused releases")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=run_list)
    pr = actions.add_parser("promote", help="verify VERSION again and make it current")
    pr.add_argument("version", metavar="VERSION")
    pr.set_defaults(func=run_promote)
    rb = actions.add_parser("rollback", help="make the previous good version current")
    rb.set_defaults(func=run_rollback)
    kg = actions.add_parser("keygen", help="make the trainer's Ed25519 key pair "
                            "(STREAMREC_SIGNING_KEY_PATH, STREAMREC_VERIFY_KEY_PATH)")
    kg.add_argument("--overwrite", action="store_true", help="replace an existing pair")
    kg.set_defaults(func=run_keygen)


def run_keygen(args: argparse.Namespace, settings: Settings) -> int:
    """Write the trainer's key pair; the private key stays on the public (trainer) side."""
    from connectors.releases.signing import generate_keypair

    generate_keypair(settings.signing_key_path, settings.verify_key_path,
                     overwrite=args.overwrite)
    print(f"private key (trainer only): {settings.signing_key_path}\n"
          f"public key (give it to the private side's model sync): {settings.verify_key_path}")
    return 0
