"""Parse what a user types to choose a replay range: times and partition offset ranges.

Pure functions, no broker: ``parse_time`` turns ISO-8601, epoch milliseconds or a relative time
(``-2h``) into epoch ms; ``parse_offsets`` turns ``P:START-END,…`` into half-open offset ranges.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from streamrec.errors import ConfigError

# Sanity range for epoch-ms: 2000-01-01 .. 2100-01-01; catches seconds passed as milliseconds.
_MIN_MS, _MAX_MS = 946_684_800_000, 4_102_444_800_000
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 604_800_000}
_RELATIVE = re.compile(r"^-(?P<amount>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d|w)$")
_OFFSETS = re.compile(r"^(?P<p>\d+):(?P<start>\d+)-(?P<end>\d*)$")
TIME_FORMS = ("ISO-8601 (2024-05-01T12:00:00Z; no zone means UTC), epoch milliseconds "
              "(1714564800000), relative to now (-2h, -30m, -7d, -90s) or 'now'")


class SpecError(ConfigError, ValueError):
    """A time or an offset range that cannot be read; the message shows the accepted forms."""


def parse_time(text: str, now_ms: int) -> int:
    """Epoch milliseconds of an ISO-8601 time, an epoch-ms number, ``now`` or ``-<n><unit>``."""
    text = text.strip()
    if text == "now":
        return now_ms
    relative = _RELATIVE.match(text)
    if relative:
        return now_ms - int(float(relative["amount"]) * _UNIT_MS[relative["unit"]])
    if text.isdigit():
        return _epoch_ms(int(text), text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SpecError(f"cannot read time {text!r}: use {TIME_FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # Kafka timestamps are UTC; so is a bare time
    return int(moment.timestamp() * 1000)


def _epoch_ms(value: int, text: str) -> int:
    if _MIN_MS <= value < _MAX_MS:
        return value
    if _MIN_MS <= value * 1000 < _MAX_MS:
        raise SpecError(f"time {text} looks like epoch seconds; give milliseconds "
                        f"({value * 1000}) or an ISO-8601 time")
    raise SpecError(f"time {text} is not a plausible epoch-ms value (years 2000-2099); "
                    f"use {TIME_FORMS}")


def format_ms(ms: int) -> str:
    """An epoch-ms time as ISO-8601 UTC with milliseconds, e.g. ``2024-05-01T12:00:00.000Z``."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_offsets(text: str) -> dict[int, tuple[int, int | None]]:
    """``P:START-END,…`` (END inclusive, or empty for "to the current end") as half-open ranges.

    Returns ``{partition: (start, end_exclusive_or_None)}``.
    """
    wanted: dict[int, tuple[int, int | None]] = {}
    for part in (p.strip() for p in text.split(",")):
        match = _OFFSETS.match(part)
        if not match:
            raise SpecError(f"cannot read offset range {part!r} in {text!r}: write "
                            "PARTITION:START-END (END inclusive), or PARTITION:START- for "
                            "everything from START on, comma-separated, e.g. 0:100-199,1:0-")
        partition, start = int(match["p"]), int(match["start"])
        if partition in wanted:
            raise SpecError(f"partition {partition} appears twice in {text!r}; give one range "
                            "per partition")
        end = int(match["end"]) + 1 if match["end"] else None
        if end is not None and end <= start:
            raise SpecError(f"offset range {part!r} ends before it starts; END is inclusive, "
                            f"so {partition}:{start}-{start} is the single record at {start}")
        wanted[partition] = (start, end)
    return wanted
