"""The configuration of every Kafka client of streamrec, built in this one module.

streamrec reaches two clusters (private and public) through two client libraries: librdkafka
(confluent-kafka: every producer, consumer and admin client of the SDK, the mirror, releases,
replays, the trainer, audits, rebuilds and the worker's events reader and output) and aiokafka,
which Faust uses for the worker's group membership, tables and commits. Each configuration is
made of three parts, merged in this order:

1. **access** — how to reach the cluster, a ``ClusterAccess``: its bootstrap servers today; its
   security protocol, SASL mechanism and credentials, CA and client certificate once the
   clusters are secured. A bare bootstrap string is an access with nothing else to say.
2. **the project's defaults for the kind of client** (``PRODUCER_DEFAULTS``,
   ``CONSUMER_DEFAULTS``, ``ADMIN_DEFAULTS``), the same for every client of that kind;
3. **the call site's overrides**: what that client deliberately does differently (its group
   and offset reset, a transactional id, ``isolation.level``, a ``logger`` or ``stats_cb``).

Overrides win over defaults but may not touch the access (``bootstrap.servers``,
``security.protocol``, ``sasl.*``, ``ssl.*``): a client reaches a cluster only the way that
cluster is configured, so securing a cluster secures every client of it. A test scans the product
code and fails on any configuration built by hand elsewhere.

    Producer(producer_config(bootstrap, **{"linger.ms": 1}))
    Consumer(consumer_config(bootstrap, "streamrec-releases", **{"auto.offset.reset": "earliest"}))
    AdminClient(admin_config(bootstrap))
    faust.App(app_id, **faust_broker_settings(bootstrap), ...)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from streamrec.errors import ConfigError

# Settings a ClusterAccess owns; a call site never sets them (see the module docstring).
KAFKA_LOG = logging.getLogger("streamrec.kafka")  # where every client's librdkafka lines go
ACCESS_KEYS = frozenset({"bootstrap.servers", "metadata.broker.list", "security.protocol"})
ACCESS_PREFIXES = ("sasl.", "ssl.")


class ClientConfigError(ConfigError, ValueError):
    """A Kafka client cannot be configured as asked (no servers, no group, a misplaced key)."""


@dataclass(frozen=True)
class ClusterAccess:
    """How a client reaches one Kafka cluster: its bootstrap servers (``host:port,...``).

    The one object a cluster's security settings belong to (protocol, SASL mechanism and
    credentials, CA and client certificate): each is turned into librdkafka settings in
    ``librdkafka`` and into Faust's broker settings in ``faust``, so no client is left out.
    ``str()`` is the bootstrap servers alone: what an error message may show.
    """

    bootstrap: str

    def __post_init__(self) -> None:
        if not isinstance(self.bootstrap, str) or not all(self.servers):
            raise ClientConfigError(f"Kafka bootstrap servers {self.bootstrap!r} are not a list of "
                             "host:port separated by commas; set the cluster's bootstrap "
                             "(STREAMREC_PRIVATE_BOOTSTRAP, STREAMREC_PUBLIC_BOOTSTRAP or "
                             "--bootstrap)")

    def __str__(self) -> str:
        return self.bootstrap

    @property
    def servers(self) -> list[str]:
        """Each bootstrap server (``host:port``)."""
        return [server.strip() for server in self.bootstrap.split(",")]

    def librdkafka(self) -> dict[str, Any]:
        """The librdkafka settings that reach this cluster."""
        return {"bootstrap.servers": self.bootstrap}

    def faust(self) -> dict[str, Any]:
        """The ``faust.App`` settings that reach this cluster (``broker``; its credentials with
        a secured cluster)."""
        return {"broker": [f"kafka://{server}" for server in self.servers]}


Cluster = str | ClusterAccess  # what every function here (and a client's caller) takes


def access(cluster: Cluster) -> ClusterAccess:
    """The ``ClusterAccess`` of ``cluster``: itself, or a bare bootstrap string's."""
    if isinstance(cluster, ClusterAccess):
        return cluster
    if isinstance(cluster, str):
        return ClusterAccess(cluster)
    raise TypeError("a Kafka cluster is given by its bootstrap servers (a str) or a "
                    f"ClusterAccess, not by a {type(cluster).__name__}")


PRODUCER_DEFAULTS = MappingProxyType({
    # Idempotent, all replicas: retries never duplicate or reorder a key's records within a
    # partition.
    "enable.idempotence": True,
    "acks": "all",
    # Java's (and aiokafka's) partitioner, so Faust routes a user's key to the same partition.
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
    "message.timeout.ms": 60_000,
})

CONSUMER_DEFAULTS = MappingProxyType({
    # streamrec keeps its positions itself (assigned by hand and stored in transactions, a
    # progress topic or the releases) or reads without any; a subscriber that commits says so.
    "enable.auto.commit": False,
    # streamrec writes in transactions (worker samples, mirror, releases, replays): a record of
    # an aborted one is never read unless a client asks for read_uncommitted.
    "isolation.level": "read_committed",
})

ADMIN_DEFAULTS: MappingProxyType[str, Any] = MappingProxyType({})


def producer_config(cluster: Cluster, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings of an idempotent, batching producer to ``cluster``."""
    return _config("producer", cluster, PRODUCER_DEFAULTS, overrides)


def consumer_config(cluster: Cluster, group: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings of a consumer of ``cluster`` in consumer group ``group``.

    librdkafka wants a group even for a consumer that only assigns partitions or reads
    watermarks; such a consumer names one it never commits to.
    """
    if not group:
        raise ClientConfigError("a Kafka consumer needs a consumer group id, got an empty one")
    return _config("consumer", cluster, CONSUMER_DEFAULTS, {"group.id": group, **overrides})


def admin_config(cluster: Cluster, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings of an admin client of ``cluster``."""
    return _config("admin client", cluster, ADMIN_DEFAULTS, overrides)


def faust_broker_settings(cluster: Cluster) -> dict[str, Any]:
    """The ``faust.App`` keyword arguments that reach ``cluster`` (``broker=[kafka://...]``)."""
    return access(cluster).faust()


def _config(kind: str, cluster: Cluster, defaults: MappingProxyType[str, Any],
            overrides: dict[str, Any]) -> dict[str, Any]:
    owned = sorted(key for key in overrides
                   if key in ACCESS_KEYS or key.startswith(ACCESS_PREFIXES))
    if owned:
        raise ClientConfigError(f"the {kind} settings {owned} belong to the cluster's access, "
                                "not to a client: set them on its ClusterAccess "
                                "(connectors.kafka.clients)")
    # librdkafka's own log lines go through Python logging (bounded by the CLI and the worker:
    # connectors.kafka.logbound), not straight to stderr.
    reached = access(cluster)
    _check_first_use(reached)
    return {**reached.librdkafka(), "logger": KAFKA_LOG, **defaults, **overrides}


_first_use: Callable[[ClusterAccess], None] | None = None
_checked: set[str] = set()
_checking = threading.Lock()


def check_on_first_use(check: Callable[[ClusterAccess], None] | None) -> None:
    """Run ``check(access)`` the first time a client of each cluster is configured in this
    process (the CLI: is the cluster there at all?); None stops checking."""
    global _first_use
    with _checking:
        _first_use = check
        _checked.clear()


def _check_first_use(reached: ClusterAccess) -> None:
    with _checking:
        check = _first_use
        if check is None or reached.bootstrap in _checked:
            return
        _checked.add(reached.bootstrap)  # also keeps the check's own client from checking
    check(reached)
