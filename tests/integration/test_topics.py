"""streamrec's topics on a real cluster: created with their configs, existing ones fixed."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from connectors.kafka.clients import admin_config
from connectors.kafka.topics import TopicSpec, describe_topic_config, ensure_topics
from streamrec.settings import Settings
from streamrec.topology import ensure_private_topics

pytestmark = pytest.mark.integration


def _config(bootstrap: str, topic: str, key: str) -> str:
    admin = AdminClient(admin_config(bootstrap))
    return describe_topic_config(admin, topic)[key].value


def test_the_recommendations_topic_is_compacted_whether_new_or_existing(kafka, unique) -> None:
    fresh = Settings(private_bootstrap=kafka.private, recommendations_topic=unique("recs"),
                     events_topic=unique("events"), dlq_topic=unique("dlq"),
                     samples_topic=unique("samples"))
    ensure_private_topics(fresh)
    assert _config(kafka.private, fresh.recommendations_topic, "cleanup.policy") == "compact"
    assert _config(kafka.private, fresh.events_topic, "cleanup.policy") == "delete"
    # A topic made before (by an older streamrec, or by hand) without compaction is fixed.
    older = unique("recs")
    ensure_topics(kafka.private, [TopicSpec(older, 4)])
    assert _config(kafka.private, older, "cleanup.policy") == "delete"
    ensure_private_topics(fresh.model_copy(update={"recommendations_topic": older}))
    assert _config(kafka.private, older, "cleanup.policy") == "compact"
