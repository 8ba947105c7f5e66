"""Kafka plumbing every stage shares: the producer, topics, dead letters and Kafka's errors."""

from __future__ import annotations

from streamrec.exports import lazy

# Public name -> the module that defines it.
_EXPORTS = {
    # connectors.kafka.dead_letters
    "dead_letter": "connectors.kafka.dead_letters",
    # connectors.kafka.errors
    "KafkaUnavailable": "connectors.kafka.errors",
    "kafka_errors": "connectors.kafka.errors",
    "kafka_unavailable": "connectors.kafka.errors",
    # connectors.kafka.producer
    "DeliveryCallback": "connectors.kafka.producer",
    "DeliveryError": "connectors.kafka.producer",
    "ProducerId": "connectors.kafka.producer",
    "RecordProducer": "connectors.kafka.producer",
    "producer_config": "connectors.kafka.producer",
    # connectors.kafka.topics
    "TopicError": "connectors.kafka.topics",
    "TopicSpec": "connectors.kafka.topics",
    "delete_topics": "connectors.kafka.topics",
    "ensure_topics": "connectors.kafka.topics",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
