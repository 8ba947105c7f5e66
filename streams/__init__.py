"""The stream workers (Faust) and the offline jobs that run their batch logic over history."""

from __future__ import annotations

from importlib import import_module

# Public name -> the module that defines it.
_EXPORTS = {
    # streams.app
    "create_worker": "streams.app",
    # streams.offline.backfill
    "BackfillReport": "streams.offline.backfill",
    "backfill_samples": "streams.offline.backfill",
    # streams.offline.rebuild
    "Generation": "streams.offline.rebuild",
    "RebuildError": "streams.offline.rebuild",
    "RebuildReport": "streams.offline.rebuild",
    "RecommendTo": "streams.offline.rebuild",
    "check_generation": "streams.offline.rebuild",
    "next_generation": "streams.offline.rebuild",
    "rebuild_state": "streams.offline.rebuild",
    # streams.pipeline
    "BatchProcessor": "streams.pipeline",
    # streams.popularity
    "DecayedPopularity": "streams.popularity",
    # streams.reader
    "ReaderError": "streams.reader",
    # streams.watchdog
    "EXIT_STALLED": "streams.watchdog",
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
