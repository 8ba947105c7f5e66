"""Faust's "current event", set explicitly for work done on a batch of events."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event  # private, but the only way to set an event's context


@contextmanager
def event_context(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event, so table access uses *its* partition.

    Faust picks a table's partition store from the current event; inside a micro-batch that
    would be the batch's last event, whose partition may differ from the user's.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
