"""Model releases: signed release records, artifact stores, the private side's models and sync."""

from __future__ import annotations

from streamrec.exports import lazy

# Public name -> the module that defines it.
_EXPORTS = {
    # connectors.releases.records
    "MODEL_NAME": "connectors.releases.records",
    "OFFSET_FROM": "connectors.releases.records",
    "OFFSET_UNTIL": "connectors.releases.records",
    "Release": "connectors.releases.records",
    "ReleaseError": "connectors.releases.records",
    "ReleasePublisher": "connectors.releases.records",
    "read_releases": "connectors.releases.records",
    "signed_release": "connectors.releases.records",
    # connectors.releases.registry
    "PrivateModels": "connectors.releases.registry",
    # connectors.releases.signing
    "SignatureError": "connectors.releases.signing",
    "SigningError": "connectors.releases.signing",
    "generate_keypair": "connectors.releases.signing",
    # connectors.releases.store
    "ArtifactStore": "connectors.releases.store",
    "LocalStore": "connectors.releases.store",
    "S3Options": "connectors.releases.store",
    "StoreError": "connectors.releases.store",
    "StoreUnavailable": "connectors.releases.store",
    "open_store": "connectors.releases.store",
    # connectors.releases.sync
    "CanaryError": "connectors.releases.sync",
    "ModelSync": "connectors.releases.sync",
    "SyncConfig": "connectors.releases.sync",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
