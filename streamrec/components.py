"""Build the project's components from the settings (the composition root reads them once)."""

from __future__ import annotations

from connectors.anonymizer import Anonymizer
from streamrec.settings import Settings


def anonymizer_for(settings: Settings) -> Anonymizer:
    """The Anonymizer of the settings' privacy fields (current and previous secrets)."""
    return Anonymizer(
        settings.pseudonym_secret.get_secret_value().encode(), settings.pseudonym_key_version,
        n_buckets=settings.token_buckets, time_bucket_ms=settings.time_bucket_ms,
        sample_rate=settings.sample_rate,
        previous_secrets={v: s.get_secret_value().encode()
                          for v, s in settings.previous_pseudonym_secrets.items()})
