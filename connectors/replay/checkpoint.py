"""The checkpoint file of a resumable replay: resolved ranges and each partition's next offset.

A small JSON file, replaced atomically (write a temporary file, fsync, rename), so a crash leaves
either the old or the new version, never a torn one. The replay advances it only after a
transaction holding the records up to ``next`` has committed; the authoritative positions are the
offsets committed in those transactions (see ``connectors.replay.writer``), and the file may lag
them by at most the last transaction.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamrec.errors import ConfigError

FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class CheckpointError(ConfigError):
    """A checkpoint name or file that cannot be used; the message says what to do."""


def checkpoint_path(data_dir: Path, name: str) -> Path:
    """Where the checkpoint ``name`` lives: ``<data_dir>/replay/<name>.json``."""
    if not _NAME.match(name):
        raise CheckpointError(
            f"replay name {name!r} is not usable: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it names a file and a Kafka transactional id)")
    return data_dir / "replay" / f"{name}.json"


@dataclass
class Checkpoint:
    """What a resumable replay copies and how far it got."""

    name: str
    cluster: str
    from_topic: str
    to_topic: str
    spec: str  # the range options as the user gave them, to detect a changed command
    ranges: dict[int, tuple[int, int]]  # partition -> (start, end exclusive)
    next: dict[int, int] = field(default_factory=dict)  # partition -> next offset to copy
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        for partition, (start, _end) in self.ranges.items():
            self.next.setdefault(partition, start)

    @property
    def total(self) -> int:
        """Offsets in all ranges."""
        return sum(end - start for start, end in self.ranges.values())

    @property
    def done(self) -> int:
        """Offsets already copied (committed)."""
        return sum(min(self.next[p], end) - start for p, (start, end) in self.ranges.items())

    @property
    def complete(self) -> bool:
        """True when every partition reached the end of its range."""
        return all(self.next[p] >= end for p, (_start, end) in self.ranges.items())

    def advance(self, positions: dict[int, int]) -> None:
        """Move partitions forward to ``positions`` (never backwards, never past the end)."""
        for partition, offset in positions.items():
            start, end = self.ranges[partition]
            self.next[partition] = max(self.next[partition], min(offset, end), start)
        self.updated_at = time.time()

    def to_json(self) -> dict[str, Any]:
        """The JSON document of this checkpoint."""
        return {
            "format": FORMAT_VERSION, "name": self.name, "cluster": self.cluster,
            "from_topic": self.from_topic, "to_topic": self.to_topic, "spec": self.spec,
            "ranges": {str(p): [s, e] for p, (s, e) in sorted(self.ranges.items())},
            "next": {str(p): n for p, n in sorted(self.next.items())},
            "complete": self.complete,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Checkpoint:
        """Read a document written by ``to_json``."""
        if doc.get("format") != FORMAT_VERSION:
            raise ValueError(f"unknown format {doc.get('format')!r}")
        return cls(
            name=doc["name"], cluster=doc["cluster"], from_topic=doc["from_topic"],
            to_topic=doc["to_topic"], spec=doc["spec"],
            ranges={int(p): (int(s), int(e)) for p, (s, e) in doc["ranges"].items()},
            next={int(p): int(n) for p, n in doc["next"].items()},
            created_at=float(doc["created_at"]), updated_at=float(doc["updated_at"]),
        )


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint stored at ``path``, or None when there is none yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return Checkpoint.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({exc}). Delete it to start that replay over "
            "(records already copied would be copied again), or use another --resume name"
        ) from None


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (readers see the old or the new file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(checkpoint.to_json(), indent=2).encode() + b"\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # make the rename itself durable


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
