"""The errors of streamrec: one base, and a branch for each thing the user can do about one.

This module is the bottom of the package graph: it imports nothing of the project, so every
package (``schemas`` included) can derive its errors from these. The command line catches
``StreamrecError`` once, prints ``streamrec <command>: <message>`` and exits with the error's
``exit_code``; the message says what failed, with the values, and what to do.
"""

from __future__ import annotations

__all__ = [
    "BadData",
    "ClusterUnreachable",
    "ConfigError",
    "PrivacyViolation",
    "ReleaseRefused",
    "StreamrecError",
]


class StreamrecError(Exception):
    """Base of every streamrec error; its message tells the user what to do.

    Exit codes: 2 when the request itself is refused before anything is done, so that changing
    it (an option, a setting, an input file) is the fix, as argparse exits for a wrong option;
    1 when the request was right but could not be carried out now. Every error class of the
    project, by branch (a test checks that this tree lists them all)::

        StreamrecError                exit 1: none of the branches below
        ├── ConfigError               exit 2: a setting, option, path or name is wrong
        │   ├── InvalidSetting            streamrec.settings
        │   ├── ClientConfigError         connectors.kafka.clients (also a ValueError)
        │   ├── TopicError                connectors.kafka.topics
        │   ├── AuditError                connectors.privacy.audit
        │   ├── SigningError              connectors.releases.signing
        │   ├── TrainerError              connectors.training.loop
        │   ├── SpecError                 connectors.replay.spec (also a ValueError)
        │   ├── RangeError                connectors.replay.ranges
        │   ├── CheckpointError           connectors.replay.checkpoint
        │   ├── SyntheticConfigError      connectors.datasets.synthetic (also a ValueError)
        │   └── RebuildError              streams.offline.rebuild
        ├── BadData                   exit 2: input records or files are invalid
        │   ├── SchemaError               schemas.codec
        │   │   ├── EncodeError
        │   │   └── DecodeError
        │   ├── DataError                 model.data (also a ValueError)
        │   ├── InvalidEvent              connectors.sdk.events (also a ValueError)
        │   ├── BadLines                  connectors.sdk.ingest (exit 1, as produce documents)
        │   ├── AnonymizationError        connectors.privacy.anonymizer (also a ValueError)
        │   └── DatasetError              connectors.datasets.readers (also a ValueError)
        │       └── MalformedRow
        ├── ClusterUnreachable        exit 1: Kafka, the object store or a worker cannot be
        │   │                                 reached: start it, or fix its address
        │   ├── KafkaUnavailable          connectors.kafka.errors (also a KafkaException)
        │   ├── RetriesExhausted          connectors.kafka.retry (also a KafkaException)
        │   ├── DeliveryError             connectors.kafka.producer
        │   └── StoreUnavailable          connectors.releases.store (also a StoreError)
        ├── PrivacyViolation          exit 2: it would carry personal data to the public side
        │   └── NotOnAllowList            connectors.mirror.errors (also a MirrorError)
        ├── ReleaseRefused            exit 1: a model release failed a check (signature,
        │   │                                 hashes, canary, metrics)
        │   ├── SignatureError            connectors.releases.signing (also a SigningError)
        │   └── CanaryError               connectors.releases.sync
        ├── ModelError                    model.errors
        │   ├── ArtifactError
        │   └── ScorerError
        ├── StoreError                    connectors.releases.store
        ├── ReleaseError                  connectors.releases.records
        ├── MirrorError                   connectors.mirror.errors
        ├── ReplayError                   connectors.replay.writer
        ├── ReaderError                   streams.reader
        └── BrokerError                   streamrec.broker

    An error that also derives from a builtin (``InvalidEvent`` is a ``ValueError``) keeps it,
    so callers that catch the builtin still do. Each branch sets its own ``exit_code`` and the
    errors under it inherit it; an error with two bases takes the code of the first base that
    sets one (``SignatureError``: ReleaseRefused's 1, not SigningError's 2).
    """

    exit_code = 1


class ConfigError(StreamrecError):
    """A setting, an option, a path or a name is wrong: fix it and run again."""

    exit_code = 2


class BadData(StreamrecError):
    """Input records or files are invalid: fix them, or skip or dead-letter the bad ones."""

    exit_code = 2


class ClusterUnreachable(StreamrecError):
    """Kafka, the object store or a worker cannot be reached: start it or fix its address."""

    exit_code = 1


class PrivacyViolation(StreamrecError):
    """A record would carry personal data to the public side: refused before anything crossed."""

    exit_code = 2


class ReleaseRefused(StreamrecError):
    """A model release failed a check (signature, hashes, canary, metrics): it is not served."""

    exit_code = 1
