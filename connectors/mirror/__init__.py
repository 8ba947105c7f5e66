"""The mirror: anonymised samples from the private cluster to the public one, exactly once."""

from __future__ import annotations

from streamrec.exports import lazy

# Public name -> the module that defines it.
_EXPORTS = {
    # connectors.mirror.errors
    "MirrorError": "connectors.mirror.errors",
    "NotOnAllowList": "connectors.mirror.errors",
    # connectors.mirror.transfer
    "PROGRESS_TOPIC": "connectors.mirror.transfer",
    "Mirror": "connectors.mirror.transfer",
    "MirrorConfig": "connectors.mirror.transfer",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
