"""Per-user state kept by the workers, and the idempotent rule that applies an event to it.

Each user's events live in one partition of the events topic, in order. The state remembers the
partition and offset of the last event it applied, so an event delivered again after a crash
(Kafka's at-least-once redelivery) is recognised and not applied twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_QUERY_BUCKETS = 32
# A state record is also a changelog message: it must stay well under Kafka's 1 MB. Validated
# events keep it far smaller (history_len ids of at most 256 characters); this is the backstop.
MAX_STATE_BYTES = 256 * 1024


@dataclass
class UserState:
    """What the worker knows about one user; serialised as compact JSON in RocksDB."""

    items: list[str] = field(default_factory=list)  # recent clicked item ids, oldest first
    query_buckets: list[int] = field(default_factory=list)  # recent search-token buckets
    clicks: int = 0
    searches: int = 0
    last_event_id: str = ""
    last_event_time: int = 0  # event time, ms
    partition: int = -1  # source partition of the last applied event
    offset: int = -1  # its offset

    def to_bytes(self) -> bytes:
        """Compact JSON for the table."""
        # vars() rather than dataclasses.asdict: no deep copy of the lists (hot path).
        data = json.dumps(vars(self), separators=(",", ":")).encode()
        while len(data) > MAX_STATE_BYTES and self.items:
            del self.items[:max(1, len(self.items) // 2)]  # the oldest half of the history
            data = json.dumps(vars(self), separators=(",", ":")).encode()
        return data

    @classmethod
    def from_bytes(cls, data: bytes | None) -> UserState:
        """The state stored in the table (a fresh one when there is none)."""
        if not data:
            return cls()
        return cls(**json.loads(data))

    def already_applied(self, partition: int, offset: int) -> bool:
        """True if the event at ``partition``/``offset`` is already reflected here."""
        return partition == self.partition and offset <= self.offset

    def applied_last(self, partition: int, offset: int) -> bool:
        """True if the event at ``partition``/``offset`` is the last one applied here."""
        return partition == self.partition and offset == self.offset

    def apply(self, event: dict[str, Any], partition: int, offset: int, buckets: list[int],
              history_len: int) -> bool:
        """Apply one decoded event; return False (and change nothing) if it was applied before."""
        if self.already_applied(partition, offset):
            return False
        if event["type"] == "click":
            self.clicks += 1
            self.items.append(event["item_id"])
            del self.items[:-history_len]
        else:
            self.searches += 1
            self.query_buckets.extend(buckets)
            del self.query_buckets[:-MAX_QUERY_BUCKETS]
        self.last_event_id = event["event_id"]
        self.last_event_time = event["timestamp"]
        self.partition, self.offset = partition, offset
        return True
