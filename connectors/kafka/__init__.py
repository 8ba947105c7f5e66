"""Kafka plumbing every stage shares: the producer, topics, dead letters and Kafka's errors."""

from __future__ import annotations

from importlib import import_module

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


def __getattr__(name: str) -> object:
    """Import a public name's module when the name is first used: importing one module of the
    package never imports the others (nor their dependencies)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
