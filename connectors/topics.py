"""Create streamrec's topics with the right partitions and configs; check existing ones."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


class TopicError(Exception):
    """A topic is missing, or exists with a layout streamrec cannot use."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic as streamrec needs it."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist; return their names; fail on a partition mismatch."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
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


def delete_topics(bootstrap: str, names: Iterable[str], timeout_s: float = 30.0) -> None:
    """Delete topics (tests and resets); missing ones are ignored."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, future in admin.delete_topics(list(names), request_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise
