"""``streamrec broker start|stop|status`` — the local private and public Kafka clusters."""

from __future__ import annotations

import argparse

from streamrec.broker import KafkaDistribution, LocalCluster, start_clusters
from streamrec.settings import Settings
from streamrec.topology import ensure_private_topics, ensure_public_topics


def local_clusters(settings: Settings) -> list[LocalCluster]:
    """The two local clusters as the settings place them."""
    root = settings.data_dir / "kafka"
    return [
        LocalCluster("private", settings.private_port, root / "private",
                     settings.partitions, settings.broker_heap),
        LocalCluster("public", settings.public_port, root / "public",
                     settings.partitions, settings.broker_heap),
    ]


def distribution(settings: Settings) -> KafkaDistribution:
    """The Kafka jars the settings pin."""
    return KafkaDistribution(settings.cache_dir, settings.kafka_version)


def run_start(args: argparse.Namespace, settings: Settings) -> int:
    clusters = local_clusters(settings)
    started = start_clusters(clusters, distribution(settings), settings.broker_start_timeout_s)
    ensure_private_topics(settings, clusters[0].bootstrap)
    ensure_public_topics(settings, clusters[1].bootstrap)
    for cluster in clusters:
        state = "started" if cluster.name in started else "already running"
        print(f"{cluster.name:8s} {state:16s} bootstrap={cluster.bootstrap}  dir={cluster.root}")
    return 0


def run_stop(args: argparse.Namespace, settings: Settings) -> int:
    for cluster in local_clusters(settings):
        stopped = cluster.stop()
        print(f"{cluster.name:8s} {'stopped' if stopped else 'was not running'}")
    return 0


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    dist = distribution(settings)
    jars = "cached" if dist.is_complete() else "not fetched yet"
    print(f"kafka    {settings.kafka_version} ({jars}: {dist.lib})")
    running = 0
    for cluster in local_clusters(settings):
        pid = cluster.read_pid()
        running += pid is not None
        state = f"running pid={pid}" if pid else "stopped"
        print(f"{cluster.name:8s} {state:20s} bootstrap={cluster.bootstrap}  dir={cluster.root}")
    return 0 if running == 2 or args.quiet_ok else 3


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``broker`` and its actions."""
    parser = sub.add_parser("broker", help="start, stop or inspect the local Kafka clusters")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("start", help="fetch Kafka if needed, start both clusters, wait until ready"
                       ).set_defaults(func=run_start)
    actions.add_parser("stop", help="stop the brokers this data dir started").set_defaults(
        func=run_stop)
    status = actions.add_parser("status", help="what runs where (exit 3 unless both run)")
    status.add_argument("--quiet-ok", action="store_true", help="exit 0 even when stopped")
    status.set_defaults(func=run_status)
