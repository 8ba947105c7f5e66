"""The client SDKs: validate and produce events, pace them, subscribe to recommendations."""

from __future__ import annotations

from importlib import import_module

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
