"""The mirror: anonymised samples from the private cluster to the public one, exactly once."""

from __future__ import annotations

from importlib import import_module

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
