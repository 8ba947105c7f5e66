"""The model store in an S3-compatible object store, through real boto3 over HTTP.

The service is moto's S3 server on a loopback port (``s3`` in conftest), or the one given by
STREAMREC_TEST_S3_ENDPOINT (e.g. a MinIO).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.privacy.audit import Detector, audit_documents
from connectors.releases.records import signed_release
from connectors.releases.signing import generate_keypair
from connectors.releases.store import (
    LocalStore,
    S3Options,
    S3Store,
    StoreError,
    StoreUnavailable,
    artifact_uri,
    fetch_artifact,
    s3_client,
)
from connectors.releases.sync import ModelSync, SyncConfig, SyncStats
from connectors.training.loop import Trainer, TrainerConfig
from model.artifact import load_artifact
from model.config import ModelConfig, TrainConfig
from model.incremental import train_candidate
from streamrec.settings import load_settings

TINY = ModelConfig(n_items=1, max_len=8, dim=16, n_layers=1, n_heads=1, dropout=0.1,
                   n_query_buckets=64, max_query_tokens=4, top_k=20)
REGION = "us-east-1"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """Trainer keys and two small real artifacts, v2 warm-started from v1."""
    root = tmp_path_factory.mktemp("artifacts")
    generate_keypair(root / "trainer.key", root / "trainer.pub")
    made: dict[str, Path] = {"root": root}
    parent = None
    for version, items in (("v1", 30), ("v2", 34)):
        seqs = [[f"i{(u + t) % items}" for t in range(5)] for u in range(40)]
        parent = train_candidate(parent, seqs, [[[]] * 5] * len(seqs), TINY,
                                 TrainConfig(epochs=1, threads=2), root / version,
                                 {"version": version})
        made[version] = parent.path
    return made


@pytest.fixture
def options(s3) -> S3Options:
    """How every side of these tests reaches the S3 service."""
    return S3Options(s3.endpoint, REGION)


@pytest.fixture
def store(options, bucket_factory, tmp_path) -> S3Store:
    """A fresh bucket as the model store, under the prefix ``models/``."""
    return S3Store(f"s3://{bucket_factory()}/models", tmp_path / "staging", s3_client(options),
                   options.endpoint_url)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_put_then_fetch_gives_the_same_bytes_and_the_hashes_verify(store, options, artifacts,
                                                                   tmp_path) -> None:
    uri = store.put(artifacts["v1"], "v1")
    assert uri == f"s3://{store.bucket}/models/v1/"
    dest = fetch_artifact(uri, tmp_path / "fetched" / "v1", options)  # as model sync does
    assert _files(dest) == _files(artifacts["v1"])
    assert load_artifact(dest).version == "v1"
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no temp dir left


def test_metadata_is_uploaded_after_every_other_file(store, artifacts) -> None:
    uploaded: list[str] = []

    def record(params, **_) -> None:
        uploaded.append(params["Key"])

    for operation in ("PutObject", "CreateMultipartUpload"):
        store.client.meta.events.register(f"before-parameter-build.s3.{operation}", record)
    store.put(artifacts["v1"], "v1")
    files = sorted(_files(artifacts["v1"]))
    assert len(files) >= 3 and sorted(uploaded) == [f"models/v1/{f}" for f in files]
    assert uploaded[-1] == "models/v1/metadata.json"


class Interrupted(Exception):
    """The upload was cut off (the connection dropped, the trainer was killed)."""


def test_an_interrupted_upload_leaves_no_version_to_fetch(store, artifacts, tmp_path) -> None:
    uploaded: list[str] = []

    def cut_after_first(params, **_) -> None:
        if uploaded:
            raise Interrupted(params["Key"])
        uploaded.append(params["Key"])

    store.client.meta.events.register("before-parameter-build.s3.PutObject", cut_after_first)
    with pytest.raises(Interrupted):
        store.put(artifacts["v1"], "v1")
    assert uploaded and not uploaded[0].endswith("metadata.json")
    store.client.meta.events.unregister("before-parameter-build.s3.PutObject", cut_after_first)
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix="models/v1/")
    assert [o["Key"] for o in listed.get("Contents", [])] == uploaded  # the one file only
    dest = tmp_path / "private" / "v1"
    with pytest.raises(StoreError, match="is not there"):
        store.fetch(f"s3://{store.bucket}/models/v1/", dest)
    assert not dest.exists()


def test_a_missing_version_is_a_store_error_and_nothing_is_created(store, tmp_path) -> None:
    dest = tmp_path / "private" / "v9"
    with pytest.raises(StoreError, match=r"s3://.*/models/v9/ is not there"):
        store.fetch(f"s3://{store.bucket}/models/v9/", dest)
    assert not dest.parent.exists()


def test_object_names_that_leave_the_artifact_are_refused(store, artifacts, tmp_path) -> None:
    store.put(artifacts["v1"], "v1")
    store.client.put_object(Bucket=store.bucket, Key="models/v1/../../escaped", Body=b"x")
    with pytest.raises(StoreError, match="leave its directory"):
        store.fetch(f"s3://{store.bucket}/models/v1/", tmp_path / "private" / "v1")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "private").exists()


def test_unknown_uri_schemes_name_the_supported_ones(tmp_path) -> None:
    with pytest.raises(StoreError, match=r"only file:// .* and s3:// .* are supported"):
        fetch_artifact("gs://bucket/models/v1/", tmp_path / "v1")


def test_a_missing_bucket_says_to_create_it(options, tmp_path) -> None:
    store = S3Store("s3://streamrec-no-such-bucket/models", tmp_path, s3_client(options),
                    options.endpoint_url)
    with pytest.raises(StoreUnavailable, match="no-such-bucket does not exist.*create it"):
        store.check()


def test_refused_credentials_say_which_settings_to_check(s3, options, bucket_factory, tmp_path,
                                                         monkeypatch) -> None:
    bucket = bucket_factory()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASTREAMRECWRONG00")  # the AWS chain reads these
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = S3Store(f"s3://{bucket}/models", tmp_path, s3_client(options), options.endpoint_url)
    with s3.credentials_enforced(), pytest.raises(StoreUnavailable) as caught:
        store.check()
    assert "refused the credentials" in str(caught.value)
    assert "AWS_ACCESS_KEY_ID" in str(caught.value)


def test_an_unreachable_endpoint_says_to_check_it(tmp_path) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = S3Store("s3://streamrec-models/m", tmp_path, s3_client(S3Options(endpoint, REGION)),
                    endpoint)
    with pytest.raises(StoreUnavailable, match="not reachable.*STREAMREC_S3_ENDPOINT_URL"):
        store.check()


def test_the_audit_finds_a_canary_in_s3_metadata_and_nothing_in_clean_artifacts(
        store, artifacts) -> None:
    detector = Detector(["Alice-Canary-7f3a"])
    store.put(artifacts["v1"], "v1")
    clean = audit_documents(store.iter_json(), detector)
    assert clean.artifact_files == 1 and clean.findings == []
    planted = json.dumps({"version": "v2", "notes": "trained by alice-canary-7f3a"}).encode()
    store.client.put_object(Bucket=store.bucket, Key="models/v2/metadata.json", Body=planted)
    store.client.put_object(Bucket=store.bucket, Key="elsewhere/notes.json", Body=planted)
    report = audit_documents(store.iter_json(), detector)
    assert report.artifact_files == 2  # only the store's prefix is the store
    assert [(f.where, f.kind) for f in report.findings] == [
        (f"s3://{store.bucket}/models/v2/metadata.json:$.notes", "canary #1")]


def test_model_sync_serves_an_s3_release_and_refuses_a_tampered_one(store, options, artifacts,
                                                                     tmp_path) -> None:
    key, pub = artifacts["root"] / "trainer.key", artifacts["root"] / "trainer.pub"
    sync = ModelSync(SyncConfig("unused:9092", "unused", tmp_path / "models-private", pub,
                                device="cpu", s3=options))
    v1 = signed_release(load_artifact(artifacts["v1"]), store.put(artifacts["v1"], "v1"), key)
    stats = SyncStats()
    sync.handle([v1], stats)
    assert stats.accepted == ["v1"] and sync.models.current() == "v1"
    v2 = signed_release(load_artifact(artifacts["v2"]), store.put(artifacts["v2"], "v2"), key)
    onnx = (artifacts["v2"] / "model.onnx").read_bytes()
    store.client.put_object(Bucket=store.bucket, Key="models/v2/model.onnx",
                            Body=onnx[:-64] + bytes(64))
    sync.handle([v2], stats)
    assert "ArtifactError" in stats.refused["v2"] and sync.models.current() == "v1"
    assert not sync.models.path_of("v2").exists()


def test_an_unreachable_store_is_no_reason_to_refuse_a_release(artifacts, tmp_path) -> None:
    key, pub = artifacts["root"] / "trainer.key", artifacts["root"] / "trainer.pub"
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    sync = ModelSync(SyncConfig("unused:9092", "unused", tmp_path / "models-private", pub,
                                device="cpu", s3=S3Options(endpoint, REGION)))
    release = signed_release(load_artifact(artifacts["v1"]), "s3://streamrec-models/m/v1/", key)
    with pytest.raises(StoreUnavailable, match="not reachable"):
        sync.handle([release], SyncStats())
    assert sync.models.registry()["refused"] == {}  # checked again when the store is back
    assert not sync.models.seen(release.describe())


def test_the_trainer_resumes_from_an_s3_release(store, artifacts) -> None:
    uri = store.put(artifacts["v2"], "v2")
    release = signed_release(load_artifact(artifacts["v2"]), uri,
                             artifacts["root"] / "trainer.key", {"generation": 2})
    trainer = Trainer(TrainerConfig("unused:9092", "train", "releases", store,
                                    artifacts["root"] / "trainer.key", TINY, TrainConfig()))
    trainer._restore([release])  # no offsets recorded: nothing to read back from Kafka
    current = trainer._current
    assert current is not None and current.version == "v2" and trainer._generation == 2
    assert current.path == store.staging_root / "v2"
    assert _files(current.path) == _files(artifacts["v2"])
    store.discard_local(current.path)  # once a newer release replaced it
    assert not current.path.exists()


def test_a_local_store_exports_in_place_and_copies_other_artifacts(artifacts, tmp_path) -> None:
    local = LocalStore(tmp_path / "store")
    uri = local.put(artifacts["v1"], "v1")  # made elsewhere: copied in
    assert uri == artifact_uri(tmp_path / "store" / "v1") == local.put(local.staging("v1"), "v1")
    assert local.local_path(uri, "v1") == (tmp_path / "store" / "v1").resolve()
    assert _files(tmp_path / "store" / "v1") == _files(artifacts["v1"])
    assert [where for where, _ in local.iter_json()] == [str(tmp_path / "store/v1/metadata.json")]
    local.discard_local(tmp_path / "store" / "v1")  # the directory is the store: kept
    assert (tmp_path / "store" / "v1").is_dir()


@pytest.mark.parametrize(("value", "ok"), [
    ("var/models", True), ("s3://streamrec-models", True), ("s3://streamrec-models/a/b", True),
    ("s3://", False), ("s3://Bad_Bucket/x", False), ("gs://bucket/models", False),
])
def test_the_model_store_setting_takes_a_directory_or_an_s3_uri(value: str, ok: bool) -> None:
    if ok:
        settings = load_settings(model_store=value)
        assert settings.model_store_is_s3 == value.startswith("s3://")
    else:
        with pytest.raises(ValidationError, match="s3://BUCKET/PREFIX"):
            load_settings(model_store=value)


def test_the_s3_endpoint_setting_must_be_a_url() -> None:
    assert load_settings(s3_endpoint_url="http://127.0.0.1:9000").s3_endpoint_url
    with pytest.raises(ValidationError, match="as a URL"):
        load_settings(s3_endpoint_url="127.0.0.1:9000")


def test_the_audit_command_stops_with_a_message_on_a_missing_bucket(s3, cli, tmp_path) -> None:
    env = {**os.environ, "STREAMREC_MODEL_STORE": "s3://streamrec-no-such-bucket/m",
           "STREAMREC_S3_ENDPOINT_URL": s3.endpoint, "STREAMREC_S3_REGION": REGION,
           "STREAMREC_DATA_DIR": str(tmp_path)}
    done = subprocess.run([*cli, "audit", "public", "--bootstrap", f"127.0.0.1:{_closed_port()}"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "streamrec-no-such-bucket does not exist" in done.stderr
    assert "Traceback" not in done.stderr
