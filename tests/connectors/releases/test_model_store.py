"""Model sync rules on the private side: what is refused, what is served, promote and rollback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from connectors.releases.records import Release, signed_release
from connectors.releases.registry import PrivateModels
from connectors.releases.signing import generate_keypair
from connectors.releases.store import StoreError, artifact_uri, uri_path
from connectors.releases.sync import ModelSync, SyncConfig, SyncStats
from model.artifact import load_artifact
from model.config import ModelConfig, TrainConfig
from model.incremental import train_candidate

TINY = ModelConfig(n_items=1, max_len=8, dim=16, n_layers=1, n_heads=1, dropout=0.1,
                   n_query_buckets=64, max_query_tokens=4, top_k=20)


def _train(out: Path, version: str, items: int, parent: Path | None = None) -> Path:
    seqs = [[f"i{(u + t) % items}" for t in range(5)] for u in range(40)]
    train_candidate(load_artifact(parent) if parent else None, seqs, [[[]] * 5] * len(seqs),
                    TINY, TrainConfig(epochs=1, threads=2), out, {"version": version})
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict[str, Path]:
    """The trainer's side: keys, two released versions, and a model whose weights are NaN."""
    root = tmp_path_factory.mktemp("store")
    generate_keypair(root / "trainer.key", root / "trainer.pub")
    generate_keypair(root / "other.key", root / "other.pub")
    v1 = _train(root / "store" / "v1", "v1", 30)
    v2 = _train(root / "store" / "v2", "v2", 34, parent=v1)
    return {"root": root, "v1": v1, "v2": v2, "nan": _nan_artifact(root / "store" / "vnan")}


def _nan_artifact(out: Path) -> Path:
    """A correctly hashed and exported artifact of a diverged model (NaN item vectors)."""
    import torch

    from model.artifact import save_artifact
    from model.export import export_onnx
    from model.network import SASRec

    config = ModelConfig(**{**TINY.to_dict(), "n_items": 30})
    model = SASRec(config)
    with torch.no_grad():
        model.item_emb.weight.fill_(float("nan"))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx_path = out.parent / "nan.onnx"
    signature = export_onnx(model, onnx_path)
    save_artifact(out, {"model.onnx": onnx_path}, {
        "version": "vnan", "config": config.to_dict(), "onnx": signature,
        "item_ids": ["", *(f"i{i}" for i in range(30))]})
    return out


def release_of(store: dict[str, Path], name: str, key: str = "trainer.key",
               path: Path | None = None) -> Release:
    """The signed release of a stored artifact (``path`` may point elsewhere than it names)."""
    artifact = load_artifact(store[name])
    return signed_release(artifact, artifact_uri(path or store[name]), store["root"] / key)


@pytest.fixture
def sync(store, tmp_path) -> ModelSync:
    return ModelSync(SyncConfig("unused:9092", "unused", tmp_path / "models-private",
                                store["root"] / "trainer.pub", device="cpu"))


def test_a_signed_verified_release_becomes_current(store, sync) -> None:
    stats = SyncStats()
    sync.handle([release_of(store, "v1")], stats)
    assert stats.accepted == ["v1"] and stats.current == "v1"
    link = sync.models.current_link
    assert link.is_symlink() and os.readlink(link) == "v1"
    assert load_artifact(link).version == "v1"
    record = sync.models.registry()["versions"]["v1"]
    assert record["canary"]["users"] == 16 and record["release"]["sha256"]
    sync.handle([release_of(store, "v1")], stats)  # seen before: skipped, not fetched again
    assert stats.skipped == 1


def _corrupt(kind: str, path: Path) -> None:
    if kind == "onnx byte flipped":
        data = bytearray((path / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (path / "model.onnx").write_bytes(bytes(data))
    elif kind == "weights missing":
        (path / "weights.pt").unlink()
    else:
        meta = json.loads((path / "metadata.json").read_text())
        meta["item_ids"][1] = "swapped"
        (path / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("kind", ["onnx byte flipped", "weights missing", "metadata edited"])
def test_a_corrupted_artifact_is_refused_and_current_stays(store, sync, tmp_path, kind) -> None:
    sync.handle([release_of(store, "v1")], SyncStats())
    damaged = tmp_path / "damaged" / "v2"
    shutil.copytree(store["v2"], damaged)
    _corrupt(kind, damaged)
    stats = SyncStats()
    sync.handle([release_of(store, "v2", path=damaged)], stats)
    assert list(stats.refused) == ["v2"] and "ArtifactError" in stats.refused["v2"]
    assert sync.models.current() == "v1"
    assert not sync.models.path_of("v2").exists()  # nothing refused is kept where it could run
    assert "v2" in sync.models.registry()["refused"]


def test_unsigned_and_wrongly_signed_releases_are_refused(store, sync) -> None:
    good = release_of(store, "v1")
    unsigned = Release(**{**good.to_record(), "signature": None})
    other_key = release_of(store, "v1", key="other.key")
    stats = SyncStats()
    sync.handle([unsigned, unsigned, other_key], stats)
    assert set(stats.refused) == {"v1"} and "SignatureError" in stats.refused["v1"]
    assert stats.skipped == 1  # the very same refused record again
    assert sync.models.current() is None and not sync.models.path_of("v1").exists()
    sync.handle([good], stats)  # a bogus release does not block the real one of that name
    assert stats.accepted == ["v1"] and sync.models.current() == "v1"


def test_a_valid_signature_over_another_artifact_is_refused(store, sync) -> None:
    # The trainer signed v2's digest, but the URI leads to v1, renamed as v2.
    impostor = Release(**{**release_of(store, "v2").to_record(),
                          "artifact_uri": artifact_uri(store["v1"])})
    reason = sync.accept(impostor) or ""
    assert "not the released model" in reason


def test_a_model_failing_the_canary_is_refused(store, sync) -> None:
    sync.handle([release_of(store, "v1")], SyncStats())
    stats = SyncStats()
    sync.handle([release_of(store, "nan")], stats)
    assert "CanaryError" in stats.refused["vnan"]
    assert sync.models.current() == "v1"


def test_rollback_and_promote_repoint_current(store, sync) -> None:
    sync.handle([release_of(store, "v1")], SyncStats())
    sync.handle([release_of(store, "v2")], SyncStats())
    models = sync.models
    assert models.current() == "v2"
    assert sync.rollback() == "v1" and os.readlink(models.current_link) == "v1"
    with pytest.raises(StoreError, match="no earlier good version"):
        sync.rollback()  # v2 was rolled back from: never returned to by a rollback
    sync.promote("v2")
    assert models.current() == "v2"
    assert sync.rollback() == "v1"
    with pytest.raises(StoreError, match="not held"):
        sync.promote("v9")
    (models.path_of("v2") / "weights.pt").write_bytes(b"tampered on disk")
    with pytest.raises(Exception, match="sha256"):
        sync.promote("v2")  # promote verifies again
    assert models.current() == "v1"
    assert [h["reason"] for h in models.registry()["history"]] == [
        "release", "release", "rollback", "promote", "rollback"]


def test_repointing_is_atomic_for_readers(store, sync) -> None:
    sync.handle([release_of(store, "v1")], SyncStats())
    sync.handle([release_of(store, "v2")], SyncStats())
    models = sync.models
    seen: set[str] = set()
    failures: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                seen.add(json.loads((models.current_link / "metadata.json").read_text())
                         ["version"])
            except (OSError, ValueError) as exc:
                failures.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(300):
        models.point_current("v1" if n % 2 else "v2", "test")
    done.set()
    reader.join()
    assert not failures and seen == {"v1", "v2"}


def test_only_file_uris_are_fetched(tmp_path) -> None:
    assert uri_path(artifact_uri(tmp_path)) == tmp_path.resolve()
    with pytest.raises(StoreError, match="only file://"):
        uri_path("https://example.com/model")
    with pytest.raises(StoreError):
        PrivateModels(tmp_path).path_of("../escape")


@pytest.mark.parametrize("module", ["connectors.releases.sync", "streamrec.cli.models"])
def test_the_sync_side_does_not_import_torch(module: str) -> None:
    code = f"import {module}, sys; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
