"""Datasets as event JSON lines: public datasets converted, and a synthetic shop."""

from __future__ import annotations

from importlib import import_module

# Public name -> the module that defines it.
_EXPORTS = {
    # connectors.datasets.readers
    "FORMATS": "connectors.datasets.readers",
    "DatasetError": "connectors.datasets.readers",
    "Event": "connectors.datasets.readers",
    "EventSummary": "connectors.datasets.readers",
    "MalformedRow": "connectors.datasets.readers",
    "dataset_files": "connectors.datasets.readers",
    "dataset_format": "connectors.datasets.readers",
    "read_events": "connectors.datasets.readers",
    # connectors.datasets.synthetic
    "SyntheticConfig": "connectors.datasets.synthetic",
    "SyntheticConfigError": "connectors.datasets.synthetic",
    "generate_events": "connectors.datasets.synthetic",
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
