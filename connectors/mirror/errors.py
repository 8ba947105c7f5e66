"""The mirror's errors: what stops it, and what it refuses to carry across."""

from __future__ import annotations

from streamrec.errors import PrivacyViolation, StreamrecError


class MirrorError(StreamrecError):
    """The mirror cannot run as configured; the message says why and what to do."""


class NotOnAllowList(MirrorError, PrivacyViolation):
    """A source topic the allow-list does not name: only anonymised samples may cross."""
