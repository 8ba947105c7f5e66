"""Each package's public names, and every error class of the project in the one error tree.

A package's ``__all__`` lists what other packages import from it, and its own errors. When a
name moves or a package starts to import another name from one, update its list here: the
test is the reviewer's view of a package's surface.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import subprocess
import sys

import pytest

from streamrec.errors import StreamrecError

EXPORTS = {
    "schemas": [
        "Codec", "DecodeError", "EncodeError", "RecommendationWriter", "SampleWriter",
        "SchemaError", "SchemaVersion", "default_codec",
    ],
    "model": [
        "Artifact", "ArtifactError", "Comparison", "DataError", "METADATA", "ModelConfig",
        "ModelError", "QueryHashing", "SASRec", "SampleBuffer", "Scorer", "ScorerError",
        "ServingGraph", "TrainConfig", "TrainJob", "compare", "cuda_unavailable_reason",
        "evaluate_artifact", "export_onnx", "format_table", "load_artifact", "normalize_query",
        "pad_left", "release_decision", "run_training", "save_artifact", "token_buckets",
        "train_candidate",
    ],
    "connectors.kafka": [
        "DeliveryCallback", "DeliveryError", "KafkaUnavailable", "ProducerId", "RecordProducer",
        "TopicError", "TopicSpec", "dead_letter", "delete_topics", "ensure_topics",
        "kafka_errors", "kafka_unavailable", "producer_config",
    ],
    "connectors.sdk": [
        "BadLines", "EventProducer", "IngestReport", "InvalidEvent", "Pacer", "Subscriber",
        "ingest", "record_problem",
    ],
    "connectors.privacy": [
        "AnonymizationError", "Anonymizer", "AuditError", "AuditReport", "Detector",
        "audit_cluster", "audit_documents", "coarsen_time",
    ],
    "connectors.mirror": ["Mirror", "MirrorConfig", "MirrorError", "NotOnAllowList",
                          "PROGRESS_TOPIC"],
    "connectors.releases": [
        "ArtifactStore", "CanaryError", "LocalStore", "MODEL_NAME", "ModelSync", "OFFSET_FROM",
        "OFFSET_UNTIL", "PrivateModels", "Release", "ReleaseError", "ReleasePublisher",
        "S3Options", "SignatureError", "SigningError", "StoreError", "StoreUnavailable",
        "SyncConfig", "generate_keypair", "open_store", "read_releases", "signed_release",
    ],
    "connectors.training": ["Trainer", "TrainerConfig", "TrainerError"],
    "connectors.replay": [
        "Checkpoint", "CheckpointError", "CopyReport", "OutRecord", "RangeError", "RangeReader",
        "Record", "ReplayError", "ReplayRange", "SpecError", "TargetWriter", "checkpoint_path",
        "committed_positions", "copy_range", "format_ms", "load_checkpoint", "parse_offsets",
        "parse_time", "partition_count", "replay_ids", "resolve_offset_range",
        "resolve_time_range", "save_checkpoint", "time_extent", "watermarks",
    ],
    "connectors.datasets": [
        "DatasetError", "Event", "EventSummary", "FORMATS", "MalformedRow", "SyntheticConfig",
        "SyntheticConfigError", "dataset_files", "dataset_format", "generate_events",
        "read_events",
    ],
    "streams": [
        "BackfillReport", "BatchProcessor", "DecayedPopularity", "EXIT_STALLED", "Generation",
        "ReaderError", "RebuildError", "RebuildReport", "RecommendTo", "backfill_samples",
        "check_generation", "create_worker", "next_generation", "rebuild_state",
    ],
    "streamrec": [
        "BadData", "BrokerError", "ClusterUnreachable", "ConfigError", "InvalidSetting",
        "KafkaDistribution", "LocalCluster", "PrivacyViolation", "ReleaseRefused", "Settings",
        "StreamrecError", "WorkerProcess", "anonymizer_for", "ensure_private_topics",
        "ensure_public_topics", "load_settings", "model_store_for", "s3_options_for",
        "settings_from_env", "start_clusters",
    ],
    "streamrec.cli": ["build_parser", "main"],
}
PRODUCT = ("schemas", "model", "connectors", "streams", "streamrec")
# Raised and caught inside one module to leave a loop: control flow, not errors anyone sees.
CONTROL_FLOW = {"connectors.kafka.retry.Abandoned"}
# What importing a package (without using its names) must not load: torch costs ~2 s, the
# serving worker must never load it; boto3 only where an s3:// store is used; and so on.
HEAVY = ("torch", "faust", "aiokafka", "boto3", "onnxruntime", "confluent_kafka")


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_each_package_exports_its_public_names(package: str) -> None:
    module = importlib.import_module(package)
    assert list(module.__all__) == EXPORTS[package]
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not missing, f"{package} exports names it does not have: {missing}"


def test_importing_a_package_imports_none_of_its_modules() -> None:
    packages = [p for p in EXPORTS if p not in ("schemas", "streamrec.cli")]  # both eager, light
    code = (f"import sys\nfor p in {packages!r}: __import__(p)\n"
            f"print(__import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert json.loads(done.stdout) == []


def _product_modules() -> list[str]:
    names = []
    for top in PRODUCT:
        package = importlib.import_module(top)
        names.append(top)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, f"{top}.")
                  if not m.name.endswith("__main__")]
    return names


def _error_classes() -> list[type[BaseException]]:
    found = []
    for name in _product_modules():
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if (issubclass(cls, BaseException) and cls.__module__ == name
                    and f"{name}.{cls.__qualname__}" not in CONTROL_FLOW):
                found.append(cls)
    return found


def test_every_error_class_is_in_the_one_tree() -> None:
    errors = [c for c in _error_classes() if c is not StreamrecError]
    assert len(errors) > 30  # the walk found the packages' modules
    stray = [f"{c.__module__}.{c.__qualname__}" for c in errors
             if not issubclass(c, StreamrecError)]
    assert not stray, f"errors outside StreamrecError's tree: {stray}"
    tree = StreamrecError.__doc__ or ""
    undrawn = [f"{c.__module__}.{c.__qualname__}" for c in errors
               if not re.search(rf"─ {c.__name__}\b", tree)]
    assert not undrawn, f"add them to the tree in StreamrecError's docstring: {undrawn}"
