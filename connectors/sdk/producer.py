"""The event producer SDK: typed events in, Avro records keyed by user out, deliveries reported.

    with EventProducer("127.0.0.1:19092") as producer:
        producer.send(Event.click("user-1", "item-42"))
    # leaving the block flushes and raises DeliveryError if any record was not delivered

The producer is idempotent (``enable.idempotence``, ``acks=all``): retries never duplicate or
reorder a user's events within a partition.
"""

from __future__ import annotations

from typing import Any

from connectors.kafka.producer import DeliveryCallback, RecordProducer
from connectors.sdk.events import Event, parse_event
from schemas import Codec, default_codec


class EventProducer(RecordProducer):
    """Sends user events to the events topic, keyed by user id so each user's order is kept."""

    def __init__(self, bootstrap: str, topic: str = "events", codec: Codec | None = None,
                 on_delivery: DeliveryCallback | None = None, **config: Any) -> None:
        super().__init__(bootstrap, on_delivery, **config)
        self.topic = topic
        self.codec = codec or default_codec()

    def send(self, event: Event | dict[str, Any]) -> Event:
        """Validate, encode and queue one event; returns the Event (with its defaults filled)."""
        if not isinstance(event, Event):
            event = parse_event(event)
        self.produce(self.topic, event.user_id.encode(), self.encode(event))
        return event

    def encode(self, event: Event) -> bytes:
        """The wire bytes of one event."""
        return self.codec.encode("user_event", event.to_record())

    def __enter__(self) -> EventProducer:
        return self
