"""The privacy boundary: the anonymiser of training samples and the audit of the public side."""

from __future__ import annotations

from streamrec.exports import lazy

# Public name -> the module that defines it.
_EXPORTS = {
    # connectors.privacy.anonymizer
    "AnonymizationError": "connectors.privacy.anonymizer",
    "Anonymizer": "connectors.privacy.anonymizer",
    "coarsen_time": "connectors.privacy.anonymizer",
    # connectors.privacy.audit
    "AuditError": "connectors.privacy.audit",
    "AuditReport": "connectors.privacy.audit",
    "Detector": "connectors.privacy.audit",
    "audit_cluster": "connectors.privacy.audit",
    "audit_documents": "connectors.privacy.audit",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
