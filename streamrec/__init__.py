"""streamrec: the settings, the local brokers, the composition of the stages, the demo, errors.

The package itself imports nothing: ``streamrec.errors`` is the bottom of the package graph and
every package imports it, so the names below are imported when first used. Inside the project,
import them from the module that defines them, which the layer contract checks.
"""

from __future__ import annotations

from streamrec.exports import lazy

# Public name -> the module that defines it.
_EXPORTS = {
    # streamrec.broker
    "BrokerError": "streamrec.broker",
    "KafkaDistribution": "streamrec.broker",
    "LocalCluster": "streamrec.broker",
    "start_clusters": "streamrec.broker",
    # streamrec.components
    "anonymizer_for": "streamrec.components",
    "model_store_for": "streamrec.components",
    "s3_options_for": "streamrec.components",
    # streamrec.errors
    "BadData": "streamrec.errors",
    "ClusterUnreachable": "streamrec.errors",
    "ConfigError": "streamrec.errors",
    "PrivacyViolation": "streamrec.errors",
    "ReleaseRefused": "streamrec.errors",
    "StreamrecError": "streamrec.errors",
    # streamrec.harness
    "WorkerProcess": "streamrec.harness",
    # streamrec.settings
    "InvalidSetting": "streamrec.settings",
    "Settings": "streamrec.settings",
    "load_settings": "streamrec.settings",
    "settings_from_env": "streamrec.settings",
    # streamrec.topology
    "ensure_private_topics": "streamrec.topology",
    "ensure_public_topics": "streamrec.topology",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
