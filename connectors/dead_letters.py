"""Dead-letter records: what failed, where it came from and why, with the original bytes."""

from __future__ import annotations

import time
from typing import Any


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
) -> dict[str, Any]:
    """A ``DeadLetter`` record ready for the codec."""
    return {
        "topic": topic, "partition": partition, "offset": offset, "key": key, "value": value,
        "stage": stage, "reason": reason, "error_type": error_type,
        "failed_at": int(time.time() * 1000), "source": source,
    }
