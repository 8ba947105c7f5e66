"""The client SDKs: validate and produce events, pace them, subscribe to recommendations."""

from __future__ import annotations

from streamrec.exports import lazy

# Public name -> the module that defines it.
_EXPORTS = {
    # connectors.sdk.events
    "InvalidEvent": "connectors.sdk.events",
    "record_problem": "connectors.sdk.events",
    # connectors.sdk.ingest
    "BadLines": "connectors.sdk.ingest",
    "IngestReport": "connectors.sdk.ingest",
    "ingest": "connectors.sdk.ingest",
    # connectors.sdk.pacing
    "Pacer": "connectors.sdk.pacing",
    # connectors.sdk.producer
    "EventProducer": "connectors.sdk.producer",
    # connectors.sdk.subscriber
    "Subscriber": "connectors.sdk.subscriber",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
