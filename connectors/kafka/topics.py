"""Create streamrec's topics with the right partitions and configs; check existing ones."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from connectors.kafka.clients import admin_config
from connectors.kafka.errors import kafka_errors
from streamrec.errors import ConfigError

log = logging.getLogger("streamrec.topics")


class TopicError(ConfigError):
    """A topic is missing, or exists with a layout streamrec cannot use."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic as streamrec needs it."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@kafka_errors("create or check topics on {bootstrap}")
def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist; return their names; fail on a partition mismatch."""
    admin = AdminClient(admin_config(bootstrap))
    existing = admin.list_topics(timeout=timeout_s).topics
    specs = list(specs)
    for spec in specs:
        if spec.name in existing:
            have = len(existing[spec.name].partitions)
            if have != spec.partitions:
                raise TopicError(
                    f"topic {spec.name!r} on {bootstrap} has {have} partitions, streamrec needs "
                    f"{spec.partitions} (all user-keyed topics must match). Set "
                    f"STREAMREC_PARTITIONS={have}, or delete and recreate the topic."
                )
    fix_configs(admin, bootstrap, [s for s in specs if s.name in existing and s.config],
                timeout_s)
    new = [NewTopic(s.name, s.partitions, 1, config=s.config) for s in specs
           if s.name not in existing]
    if not new:
        return []
    created = []
    for name, future in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # lost a race with another creator
                raise TopicError(f"cannot create topic {name!r} on {bootstrap}: {exc}") from exc
    return created


def fix_configs(admin: AdminClient, bootstrap: str, specs: list[TopicSpec],
                timeout_s: float = 30.0) -> list[str]:
    """Set the configs streamrec needs on existing topics that lack them; return what changed.

    For example ``recommendations`` is the changelog of the latest-recommendation table and
    must be compacted: with delete retention, a worker restored on a fresh disk would lose the
    latest recommendation of every user quiet for longer than the retention. Each change is
    logged in one line.
    """
    done = []
    for spec in specs:
        have = describe_topic_config(admin, spec.name, timeout_s)
        wrong = {k: v for k, v in spec.config.items() if k not in have or have[k].value != v}
        if not wrong:
            continue
        update = ConfigResource(ResourceType.TOPIC, spec.name, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in wrong.items()])
        settings = ",".join(f"{k}={v}" for k, v in wrong.items())
        (future,) = admin.incremental_alter_configs([update], request_timeout=timeout_s).values()
        try:
            future.result()
        except KafkaException as exc:
            raise TopicError(
                f"topic {spec.name!r} on {bootstrap} needs {settings} and streamrec could not "
                f"set it ({exc.args[0].str()}); set it with kafka-configs.sh --alter "
                f"--entity-type topics --entity-name {spec.name} --add-config {settings}"
            ) from None
        log.warning("topic %s on %s: set %s (streamrec needs it)", spec.name, bootstrap, settings)
        done.append(spec.name)
    return done


def describe_topic_config(admin: AdminClient, topic: str, timeout_s: float = 30.0
                          ) -> dict[str, Any]:
    """A topic's config entries; waits a little for a topic created a moment ago, which the
    broker may not know yet (UNKNOWN_TOPIC_OR_PART)."""
    deadline = time.monotonic() + min(timeout_s, 10.0)
    while True:
        (future,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)],
                                           request_timeout=timeout_s).values()
        try:
            return future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART" or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def delete_topics(bootstrap: str, names: Iterable[str], timeout_s: float = 30.0) -> None:
    """Delete topics (tests and resets); missing ones are ignored."""
    admin = AdminClient(admin_config(bootstrap))
    for _, future in admin.delete_topics(list(names), request_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise
