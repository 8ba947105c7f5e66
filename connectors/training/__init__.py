"""The incremental trainer of the public side: windows of samples in, signed releases out."""

from __future__ import annotations

from streamrec.exports import lazy

# Public name -> the module that defines it.
_EXPORTS = {
    # connectors.training.loop
    "Trainer": "connectors.training.loop",
    "TrainerConfig": "connectors.training.loop",
    "TrainerError": "connectors.training.loop",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
