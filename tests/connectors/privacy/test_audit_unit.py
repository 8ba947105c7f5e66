"""The audit's detectors and artifact scan without a broker; the release-signing keys.

(Signing lives here because it is the other half of the privacy/trust boundary's unit tests.)
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from connectors.privacy.anonymizer import Anonymizer
from connectors.privacy.audit import AuditError, Detector, audit_artifacts, redact
from connectors.releases.signing import (
    SignatureError,
    SigningError,
    generate_keypair,
    sign,
    verify,
)

CANARIES = ["Alice-Canary-7f3a", "bob.canary@example.org", "4915112345678"]


def kinds(findings) -> list[str]:
    return sorted(f.kind for f in findings)


@pytest.mark.parametrize(("text", "kind"), [
    ("write to jane.roe@example.com", "email"),
    ("call +49 171 5550123", "phone"),
    ("call +491715550123", "phone"),
    ("(555) 123-4567", "phone"),
    ("from 203.0.113.77", "ipv4"),
    ("from 2001:db8::8a2e:370:7334", "ipv6"),
    ("pay 4111 1111 1111 1111", "card"),
    ("pay 4111-1111-1111-1111", "card"),
    ("Mozilla/5.0 (X11; Linux x86_64)", "user agent"),
    ("okhttp/4.9.0", "user agent"),
])
def test_each_pattern_is_detected(text: str, kind: str) -> None:
    assert kinds(Detector().text(text, "here")) == [kind]


@pytest.mark.parametrize("text", [
    "2014-04-01T01:02:21.719000+00:00", "1700000000000", "214536502", "item-42",
    "12:30:45", "v1.31.1", "4111 1111 1111 1112",  # not Luhn-valid
])
def test_ordinary_values_are_not_flagged(text: str) -> None:
    assert Detector().text(text, "here") == []


def test_anonymised_samples_are_clean() -> None:
    anonymizer = Anonymizer(b"k", 1, 4096, 3_600_000, 1.0)
    detector = Detector(CANARIES)
    for i in range(2000):
        event = {"event_id": f"e{i}", "user_id": f"user-{i}", "type": "search",
                 "query": f"red shoes {i}", "timestamp": 1_700_000_000_000 + i}
        assert detector.value(anonymizer.anonymize(event, i).to_record(), "v") == []


def test_canaries_are_found_case_insensitively_in_text_bytes_and_numbers() -> None:
    detector = Detector(CANARIES)
    assert kinds(detector.text("user ALICE-canary-7F3A clicked", "t")) == ["canary #1"]
    assert kinds(detector.raw(b"\x00\x02alice-canary-7f3a\xff", "b")) == ["canary #1 (bytes)"]
    assert kinds(detector.value({"user": 4915112345678}, "v")) == ["canary #3"]
    record = {"query": "mail bob.canary@example.org", "context": {"ip": "203.0.113.9"}}
    found = detector.value(record, "topic/0/5/value")
    assert kinds(found) == ["canary #2", "email", "ipv4"]
    assert {f.where for f in found} == {"topic/0/5/value.query", "topic/0/5/value.context.ip"}


def test_findings_are_redacted() -> None:
    found = Detector(CANARIES).text("bob.canary@example.org", "w")
    shown = " ".join(str(f) for f in found)
    assert "bob.canary" not in shown and "example" not in shown
    assert redact("bob.canary@example.org") == "'bo'… (22 chars)"


def test_short_canaries_are_refused() -> None:
    with pytest.raises(AuditError, match="shorter than 4"):
        Detector(["abc"])


def test_artifact_metadata_is_scanned(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "metadata.json").write_text(json.dumps(
        {"version": "v1", "created": "2026-11-22T14:52:04+00:00", "metrics": {"hr@10": 0.3}}))
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "metadata.json").write_text(json.dumps(
        {"notes": "trained by alice-canary-7f3a", "owner": {"mail": "x.y@corp.example.com"}}))
    (tmp_path / "v2" / "broken.json").write_bytes(b"{not json 203.0.113.5")
    report = audit_artifacts(tmp_path, Detector(CANARIES))
    assert report.artifact_files == 3
    assert sorted((f.where.rsplit("/", 2)[-2:], f.kind) for f in report.findings) == [
        (["v2", "broken.json"], "ipv4"),
        (["v2", "metadata.json:$.notes"], "canary #1"),
        (["v2", "metadata.json:$.owner.mail"], "email"),
    ]


def test_keypair_signs_and_verifies(tmp_path: Path) -> None:
    private, public = tmp_path / "keys" / "trainer.key", tmp_path / "keys" / "trainer.pub"
    generate_keypair(private, public)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    signature = sign(private, b"sha256-of-release")
    assert len(signature) == 64
    verify(public, b"sha256-of-release", signature)
    with pytest.raises(SignatureError, match="does not verify"):
        verify(public, b"sha256-of-another-release", signature)


def test_a_signature_of_another_key_is_refused(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "a.key", tmp_path / "a.pub")
    generate_keypair(tmp_path / "b.key", tmp_path / "b.pub")
    with pytest.raises(SignatureError):
        verify(tmp_path / "b.pub", b"data", sign(tmp_path / "a.key", b"data"))


def test_key_files_are_protected_and_errors_name_the_fix(tmp_path: Path) -> None:
    private, public = tmp_path / "t.key", tmp_path / "t.pub"
    generate_keypair(private, public)
    with pytest.raises(SigningError, match="refusing to replace"):
        generate_keypair(private, public)
    private.chmod(0o644)
    with pytest.raises(SigningError, match="chmod 600"):
        sign(private, b"x")
    with pytest.raises(SigningError, match="does not exist"):
        verify(tmp_path / "missing.pub", b"x", b"\0" * 64)
    with pytest.raises(SigningError, match="not a PEM public key"):
        verify(private, b"x", b"\0" * 64)
