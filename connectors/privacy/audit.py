"""Search everything stored on the public side for personal data: planted canaries and patterns.

    scan = audit_cluster("127.0.0.1:29092", Detector(["alice@example.org"]))
    scan.findings  # [Finding(where="train.samples/0/17/value.query", kind="canary #1", ...)]

The audit reads every record of every topic (internal ``__*`` topics aside) from the low to the high
watermark -- keys, values and headers; values that a streamrec schema wrote are decoded and each
field is scanned, anything else is scanned as text -- and every ``*.json`` file of the model store.
It looks for (a) canaries, exact values planted in the private data, case-insensitively in the text
and in the raw bytes, and (b) e-mail addresses, phone numbers, IPv4/IPv6 addresses, card numbers
(Luhn-valid) and user-agent strings. Its patterns are its own, not the anonymizer's, so one bug
cannot blind both. By default it also reads records of aborted transactions: they are stored on the
public brokers all the same. Findings are printed redacted, so the report itself leaks nothing.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.kafka.clients import admin_config, consumer_config
from connectors.kafka.errors import kafka_errors
from schemas import DecodeError, default_codec
from streamrec.errors import ConfigError

MIN_CANARY_LEN = 4
_EPOCH_MS = range(946_684_800_000, 4_102_444_800_000)  # 2000..2100: timestamps, not cards


class AuditError(ConfigError):
    """The audit cannot read what it was asked to scan."""


@dataclass(frozen=True)
class Finding:
    """One piece of personal data found: where, of what kind, and a redacted excerpt."""

    where: str
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.kind} at {self.where}: {self.excerpt}"


def redact(value: str) -> str:
    """Enough of a match to find it again, not enough to learn it: 'al…' (17 chars)."""
    shown = value[:2] if len(value) > 6 else ""
    return f"{shown!r}… ({len(value)} chars)"


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _is_card(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return _luhn_ok(digits) and not (len(digits) == 13 and int(digits) in _EPOCH_MS)


def _is_ip(match: str) -> bool:
    try:
        ipaddress.ip_address(match)
    except ValueError:
        return False
    return match != "::"


def _is_phone(match: str) -> bool:
    digits = sum(ch.isdigit() for ch in match)
    is_date = re.fullmatch(r"\d{4}-\d{2}-\d{2}", match) is not None
    return 7 <= digits <= 15 and not is_date


# (kind, pattern, validator). Earlier kinds claim their text first: an IPv4 address is not also
# reported as a phone number.
_PATTERNS: tuple[tuple[str, re.Pattern[str], Any], ...] = (
    ("email", re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}", re.I), None),
    ("ipv4", re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)"), _is_ip),
    ("ipv6", re.compile(r"(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])", re.I), _is_ip),
    ("card", re.compile(r"(?<!\w)\d(?:[ -]?\d){12,18}(?!\w)"), _is_card),
    # Not after ':' or '.', so the seconds and fraction of an ISO time are no phone number.
    ("phone", re.compile(r"(?<![\w+])\+\d{8,15}(?!\w)|(?<![\w+:.])\+?\(?\d{1,4}\)?"
                         r"(?:[ ./-]{1,2}\(?\d{2,8}\)?){1,5}(?!\w)"), _is_phone),
    ("user agent", re.compile(r"\b(?:mozilla|opera|dalvik|applewebkit|gecko|chrome|safari|"
                              r"okhttp|curl|python-requests)/\d", re.I), None),
)


class Detector:
    """Finds canaries and personal-data patterns in text, bytes and decoded records."""

    def __init__(self, canaries: Sequence[str] = ()) -> None:
        short = [c for c in canaries if len(c) < MIN_CANARY_LEN]
        if short:
            raise AuditError(f"{len(short)} canary value(s) shorter than {MIN_CANARY_LEN} "
                             "characters would match almost anywhere; use longer, unique values")
        self.canaries = [c.casefold() for c in canaries]
        self._canary_bytes = [c.encode("utf-8").lower() for c in canaries]

    def text(self, value: str, where: str) -> list[Finding]:
        """Canaries and patterns in one string."""
        folded = value.casefold()
        found = [Finding(where, f"canary #{i}", redact(c))
                 for i, c in enumerate(self.canaries, 1) if c in folded]
        claimed: list[tuple[int, int]] = []
        for kind, pattern, valid in _PATTERNS:
            for m in pattern.finditer(value):
                overlaps = any(m.start() < end and start < m.end() for start, end in claimed)
                if not overlaps and (valid is None or valid(m.group())):
                    claimed.append(m.span())
                    found.append(Finding(where, kind, redact(m.group())))
        return found

    def raw(self, data: bytes, where: str) -> list[Finding]:
        """Canaries in raw bytes (ASCII case folded) and everything ``text`` finds in them."""
        lowered = data.lower()
        found = [Finding(where, f"canary #{i} (bytes)", redact(self.canaries[i - 1]))
                 for i, c in enumerate(self._canary_bytes, 1) if c in lowered]
        text_found = self.text(data.decode("utf-8", errors="replace"), where)
        return found + [f for f in text_found if not f.kind.startswith("canary")]

    def value(self, data: Any, where: str) -> list[Finding]:
        """Every string, bytes and number inside a decoded record or JSON document."""
        found: list[Finding] = []
        for path, leaf in _leaves(data, where):
            if isinstance(leaf, str):
                found += self.text(leaf, path)
            elif isinstance(leaf, bytes):
                found += self.raw(leaf, path)
            elif isinstance(leaf, int | float) and not isinstance(leaf, bool):
                # A number can be a canary (a numeric user id, a phone number stored as an int).
                found += [f for f in self.text(str(leaf), path) if f.kind.startswith("canary")]
        return found


def _leaves(data: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield f"{path}.<key>", str(key)
            yield from _leaves(value, f"{path}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _leaves(value, f"{path}[{i}]")
    else:
        yield path, data


@dataclass
class AuditReport:
    """What was scanned and what was found."""

    findings: list[Finding] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    partitions: int = 0
    records: int = 0
    bytes: int = 0
    artifact_files: int = 0

    def summary(self) -> str:
        """One line: how much was scanned and how many findings."""
        return (f"scanned {len(self.topics)} topic(s), {self.partitions} partition(s), "
                f"{self.records} record(s) ({self.bytes} bytes), {self.artifact_files} artifact "
                f"metadata file(s): {len(self.findings)} finding(s)")


@kafka_errors("scan the cluster {bootstrap}")
def audit_cluster(bootstrap: str, detector: Detector, topics: Sequence[str] | None = None, *,
                  report: AuditReport | None = None, read_committed: bool = False,
                  timeout_s: float = 30.0) -> AuditReport:
    """Scan every record of the cluster's topics (or of ``topics``) up to the high watermarks."""
    report = report or AuditReport()
    existing = AdminClient(admin_config(bootstrap)).list_topics(timeout=timeout_s).topics
    if topics:
        missing = sorted(set(topics) - set(existing))
        if missing:
            raise AuditError(f"topic(s) {missing} do not exist on {bootstrap}")
    names = sorted(topics or (t for t in existing if not t.startswith("__")))
    consumer = Consumer(consumer_config(
        bootstrap, f"streamrec-audit-{uuid.uuid4().hex[:8]}", **{
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted"}))
    try:
        todo = _assign_all(consumer, existing, names, timeout_s)
        report.topics += names
        report.partitions += sum(len(existing[t].partitions) for t in names)
        _drain(consumer, todo, detector, report, timeout_s)
    finally:
        consumer.close()
    return report


def _assign_all(consumer: Consumer, existing: dict, names: list[str],
                timeout_s: float) -> set[tuple[str, int]]:
    """Assign every non-empty partition from its low watermark; return those to read."""
    assignment = []
    for name in names:
        for p in existing[name].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout_s)
            if high > low:
                assignment.append(TopicPartition(name, p, low))
    consumer.assign(assignment)
    return {(tp.topic, tp.partition) for tp in assignment}


def _drain(consumer: Consumer, todo: set[tuple[str, int]], detector: Detector,
           report: AuditReport, timeout_s: float) -> None:
    """Read until every partition reports its end; fail if reading stalls for ``timeout_s``."""
    codec = default_codec()
    last_progress = time.monotonic()
    while todo:
        msgs = consumer.consume(1000, 0.5)
        if msgs:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > timeout_s:
            raise AuditError(f"no progress for {timeout_s:.0f} s; still unread: {sorted(todo)}")
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
                todo.discard((msg.topic(), msg.partition()))
                continue
            report.records += 1
            report.findings += _scan_message(msg, detector, codec)
            report.bytes += len(msg.key() or b"") + len(msg.value() or b"")


def _scan_message(msg: Message, detector: Detector, codec: Any) -> list[Finding]:
    where = f"{msg.topic()}/{msg.partition()}/{msg.offset()}"
    found = detector.raw(msg.key(), f"{where}/key") if msg.key() else []
    for name, data in msg.headers() or []:
        found += detector.text(name, f"{where}/header-name")
        found += detector.raw(data or b"", f"{where}/header[{name}]")
    value = msg.value()
    if value:
        try:
            record = codec.decode(codec.writer_of(value).name, value)
        except DecodeError:
            found += detector.raw(value, f"{where}/value")
        else:
            found += detector.value(record, f"{where}/value")
    return found


def audit_artifacts(root: Path, detector: Detector,
                    report: AuditReport | None = None) -> AuditReport:
    """Scan every ``*.json`` file under ``root`` (artifact metadata): keys, strings, numbers."""
    files = ((str(path), path.read_bytes()) for path in sorted(root.rglob("*.json")))
    return audit_documents(files, detector, report)


def audit_documents(documents: Iterable[tuple[str, bytes]], detector: Detector,
                    report: AuditReport | None = None) -> AuditReport:
    """Scan JSON documents given as (where, content), e.g. a model store's ``iter_json()``.

    A document that is not JSON is scanned as raw bytes.
    """
    report = report or AuditReport()
    for where, data in documents:
        report.artifact_files += 1
        report.bytes += len(data)
        try:
            document = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            report.findings += detector.raw(data, where)
        else:
            report.findings += detector.value(document, f"{where}:$")
    return report
