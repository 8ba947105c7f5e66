"""Is a Kafka cluster there? One quiet metadata request, and one line saying what to do if not.

A command that needs a cluster asks first, so that an unreachable one is reported within
``timeout_s`` (``STREAMREC_CONNECT_TIMEOUT_S``) as one line naming the cluster and its address,
instead of after librdkafka's retries and a page of its connection errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from connectors.kafka.clients import Cluster, access, admin_config
from connectors.kafka.errors import KafkaUnavailable, reason

QUIET = logging.getLogger("streamrec.kafka.reach")  # the probe's own connection errors: dropped
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def reach(cluster: Cluster, names: Mapping[str, str], timeout_s: float) -> None:
    """Return once ``cluster`` answers a metadata request; ``KafkaUnavailable`` if it does not
    within ``timeout_s``. ``names`` tells the user which cluster an address is ("private",
    "public")."""
    address = access(cluster).bootstrap
    admin = AdminClient(admin_config(cluster, logger=QUIET))
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        name = names.get(address)
        fix = (f"start it (`streamrec broker start` for the local ones) or set "
               f"STREAMREC_{name.upper()}_BOOTSTRAP to its address" if name else
               "is it running, and is that its address?")
        raise KafkaUnavailable(f"cannot reach the {name + ' ' if name else ''}Kafka cluster at "
                               f"{address} within {timeout_s:g} s ({reason(exc)}); {fix}",
                               err) from None
