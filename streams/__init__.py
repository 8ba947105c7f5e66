"""The stream workers (Faust) and the offline jobs that run their batch logic over history."""

from __future__ import annotations

from streamrec.exports import lazy

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
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
