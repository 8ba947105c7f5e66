"""Build the project's components from the settings (the composition root reads them once)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.privacy.anonymizer import Anonymizer
from streamrec.settings import Settings

if TYPE_CHECKING:
    from connectors.releases.store import ArtifactStore, S3Options


def anonymizer_for(settings: Settings) -> Anonymizer:
    """The Anonymizer of the settings' privacy fields (current and previous secrets)."""
    return Anonymizer(
        settings.pseudonym_secret.get_secret_value().encode(), settings.pseudonym_key_version,
        n_buckets=settings.token_buckets, time_bucket_ms=settings.time_bucket_ms,
        sample_rate=settings.sample_rate,
        previous_secrets={v: s.get_secret_value().encode()
                          for v, s in settings.previous_pseudonym_secrets.items()})


def s3_options_for(settings: Settings) -> S3Options:
    """Endpoint and region of s3:// model stores (credentials: the standard AWS chain)."""
    from connectors.releases.store import S3Options

    return S3Options(endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)


def model_store_for(settings: Settings, location: str | None = None) -> ArtifactStore:
    """The trainer's model store (STREAMREC_MODEL_STORE, or ``location``): a directory or an
    s3:// bucket whose artifacts are staged under ``settings.artifact_dir``."""
    from connectors.releases.store import open_store

    return open_store(location or settings.model_store, settings.artifact_dir,
                      s3_options_for(settings))
