"""Datasets as event JSON lines: public datasets converted, and a synthetic shop."""

from __future__ import annotations

from streamrec.exports import lazy

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
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
