"""Replay: resolve a range of a topic's history, read it in order, copy it (resumably)."""

from __future__ import annotations

from streamrec.exports import lazy

# Public name -> the module that defines it.
_EXPORTS = {
    # connectors.replay.checkpoint
    "Checkpoint": "connectors.replay.checkpoint",
    "CheckpointError": "connectors.replay.checkpoint",
    "checkpoint_path": "connectors.replay.checkpoint",
    "load_checkpoint": "connectors.replay.checkpoint",
    "save_checkpoint": "connectors.replay.checkpoint",
    # connectors.replay.history
    "CopyReport": "connectors.replay.history",
    "OutRecord": "connectors.replay.history",
    "RangeReader": "connectors.replay.history",
    "Record": "connectors.replay.history",
    "TargetWriter": "connectors.replay.history",
    "copy_range": "connectors.replay.history",
    # connectors.replay.ranges
    "RangeError": "connectors.replay.ranges",
    "ReplayRange": "connectors.replay.ranges",
    "partition_count": "connectors.replay.ranges",
    "resolve_offset_range": "connectors.replay.ranges",
    "resolve_time_range": "connectors.replay.ranges",
    "time_extent": "connectors.replay.ranges",
    "watermarks": "connectors.replay.ranges",
    # connectors.replay.spec
    "SpecError": "connectors.replay.spec",
    "format_ms": "connectors.replay.spec",
    "parse_offsets": "connectors.replay.spec",
    "parse_time": "connectors.replay.spec",
    # connectors.replay.writer
    "ReplayError": "connectors.replay.writer",
    "committed_positions": "connectors.replay.writer",
    "replay_ids": "connectors.replay.writer",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
