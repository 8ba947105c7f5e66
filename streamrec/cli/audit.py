"""``streamrec audit public`` — prove that no personal data reached the public cloud."""

from __future__ import annotations

import argparse
from pathlib import Path

from connectors.privacy.audit import AuditReport, Detector, audit_cluster, audit_documents
from streamrec.errors import ConfigError
from streamrec.settings import Settings


def read_canaries(path: Path) -> list[str]:
    """Canary values of a file: one per line; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read canaries from {path}: {exc.strerror}") from None
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def run_public(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.releases.store import LocalStore  # boto3 only for the commands that use it
    from streamrec.components import model_store_for

    bootstrap = args.bootstrap or settings.public_servers
    topics = [t for group in args.topics or [] for t in group.split(",") if t]
    store = model_store_for(settings, args.artifacts)
    absent = isinstance(store, LocalStore) and not store.root.is_dir()
    if args.artifacts is not None and absent:
        raise ConfigError(f"--artifacts {args.artifacts} is not a directory")
    detector = Detector(read_canaries(args.canaries) if args.canaries else [])
    store.check()  # a bucket that cannot be read fails before the long cluster scan
    report = audit_cluster(bootstrap, detector, topics or None,
                           read_committed=args.read_committed, timeout_s=args.timeout)
    audit_documents(store.iter_json(), detector, report)
    _print(report, args.max_findings, detector,
           f"{store.location} (absent, skipped)" if absent else store.location)
    return 1 if report.findings else 0


def _print(report: AuditReport, limit: int, detector: Detector, where: str) -> None:
    for finding in report.findings[:limit]:
        print(f"FOUND {finding}")
    if len(report.findings) > limit:
        print(f"... and {len(report.findings) - limit} more finding(s)")
    print(f"audit: {len(detector.canaries)} canary value(s); artifacts: {where}")
    print(f"audit: {report.summary()}")
    print("audit: FAILED, personal data on the public side" if report.findings
          else "audit: passed, no personal data found")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``audit public``."""
    audit = sub.add_parser("audit", help="search stored data for personal data")
    targets = audit.add_subparsers(dest="target", metavar="TARGET", required=True)
    p = targets.add_parser("public", help="every record of the public cluster and every "
                           "artifact's metadata; exits 1 on any finding")
    p.add_argument("--canaries", type=Path, metavar="FILE",
                   help="planted values to look for, one per line")
    p.add_argument("--artifacts", metavar="DIR|s3://BUCKET/PREFIX",
                   help="model store to scan (default: STREAMREC_MODEL_STORE)")
    p.add_argument("--topics", action="append", metavar="T1,T2",
                   help="scan only these topics (repeatable; default: all but internal __*)")
    p.add_argument("--bootstrap", help="public cluster (default: STREAMREC_PUBLIC_BOOTSTRAP)")
    p.add_argument("--read-committed", action="store_true",
                   help="skip records of aborted transactions (default: scan every stored byte)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="give up when reading stalls this long (default: 30)")
    p.add_argument("--max-findings", type=int, default=100, metavar="N",
                   help="print at most N findings (all are counted)")
    p.set_defaults(func=run_public)
