"""The topics of each cluster, as the settings name them, and creating them."""

from __future__ import annotations

from connectors.kafka.topics import TopicSpec, ensure_topics
from streamrec.settings import Settings

COMPACTED = {"cleanup.policy": "compact"}


def private_topics(settings: Settings) -> list[TopicSpec]:
    """Topics of the private cluster; every user-keyed one has the same partition count."""
    n = settings.partitions
    return [
        TopicSpec(settings.events_topic, n),
        TopicSpec(settings.dlq_topic, 1),
        # The latest-recommendation table's changelog: compacted, or a worker restored on a
        # fresh disk loses the latest recommendation of users quiet for the retention.
        TopicSpec(settings.recommendations_topic, n, COMPACTED),
        TopicSpec(settings.samples_topic, n),
        TopicSpec(settings.releases_topic, 1, COMPACTED),
    ]


def public_topics(settings: Settings) -> list[TopicSpec]:
    """Topics of the public cluster."""
    return [
        TopicSpec(settings.train_topic, settings.partitions),
        TopicSpec(settings.releases_topic, 1, COMPACTED),
    ]


def ensure_private_topics(settings: Settings, bootstrap: str | None = None) -> list[str]:
    """Create the private cluster's topics that are missing."""
    return ensure_topics(bootstrap or settings.private_servers, private_topics(settings))


def ensure_public_topics(settings: Settings, bootstrap: str | None = None) -> list[str]:
    """Create the public cluster's topics that are missing."""
    return ensure_topics(bootstrap or settings.public_servers, public_topics(settings))
