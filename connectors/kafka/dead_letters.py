"""Dead-letter records: what failed, where it came from and why, with the original bytes.

A dead letter must always fit one Kafka message, whatever the record that failed: the broker
accepts values up to its ``message.max.bytes`` (about 1 MB by default), and a dead letter that
holds such a value whole, plus its metadata, would be refused in turn. So a key or value larger
than ``MAX_KEPT_BYTES`` is cut to its first bytes, and ``truncated`` with the full sizes says so.
"""

from __future__ import annotations

import time

from schemas.records import DeadLetter

MAX_KEPT_BYTES = 256 * 1024  # of each of key and value; 512 KiB together, well under 1 MB
MAX_REASON_CHARS = 2000


def dead_letter(
    *,
    stage: str,
    reason: str,
    error_type: str,
    value: bytes | None,
    key: bytes | None = None,
    topic: str = "-",
    partition: int = -1,
    offset: int = -1,
    source: str = "",
) -> DeadLetter:
    """The dead letter of a record (key and value cut to fit one message, if need be)."""
    truncated = any(b is not None and len(b) > MAX_KEPT_BYTES for b in (key, value))
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS - 3] + "..."
    return DeadLetter(
        topic=topic, partition=partition, offset=offset, key=_kept(key), value=_kept(value),
        stage=stage, reason=reason, error_type=error_type,
        failed_at=int(time.time() * 1000), source=source, truncated=truncated,
        key_size=-1 if key is None else len(key),
        value_size=-1 if value is None else len(value))


def _kept(data: bytes | None) -> bytes | None:
    if data is None or len(data) <= MAX_KEPT_BYTES:
        return data
    return bytes(memoryview(data)[:MAX_KEPT_BYTES])
