"""Artifact format: contents, hashes, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model.artifact import Artifact, load_artifact, save_artifact, sha256_file
from model.errors import ArtifactError


def test_metadata_holds_what_the_release_needs(beauty_artifact: Artifact) -> None:
    meta = beauty_artifact.metadata
    for key in (
        "version",
        "parent_version",
        "config",
        "item_ids",
        "metrics",
        "training_data",
        "created_at",
        "files",
        "onnx",
        "query_hashing",
    ):
        assert key in meta, key
    assert meta["onnx"]["opset"] == 18
    assert [i["name"] for i in meta["onnx"]["inputs"]] == [
        "item_ids",
        "query_buckets",
        "exclude_ids",
        "k",
    ]
    assert beauty_artifact.item_ids[0] == "" and len(beauty_artifact.item_ids) > 100
    for name, digest in meta["files"].items():
        assert sha256_file(beauty_artifact.path / name) == digest
    assert meta["training_data"]["format"] == "s3rec" and meta["training_data"]["users"] == 400
    assert "HR@10" in meta["metrics"]["test"]


def test_changed_onnx_file_is_refused(beauty_artifact: Artifact, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(beauty_artifact.path, tmp_path / "a"))
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-1] ^= 1
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.onnx has sha256 .* re-download"):
        load_artifact(copy)


def test_changed_metadata_is_refused(beauty_artifact: Artifact, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(beauty_artifact.path, tmp_path / "a"))
    meta = json.loads((copy / "metadata.json").read_text())
    meta["item_ids"][1], meta["item_ids"][2] = meta["item_ids"][2], meta["item_ids"][1]
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="changed after the artifact was written"):
        load_artifact(copy)


def test_missing_pieces_are_named(beauty_artifact: Artifact, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a model artifact"):
        load_artifact(tmp_path)
    copy = Path(shutil.copytree(beauty_artifact.path, tmp_path / "a"))
    (copy / "weights.pt").unlink()
    with pytest.raises(ArtifactError, match="lacks weights.pt"):
        load_artifact(copy)


def test_save_refuses_to_overwrite_unless_asked(beauty_artifact: Artifact, tmp_path: Path) -> None:
    meta = {
        "config": beauty_artifact.metadata["config"],
        "onnx": beauty_artifact.metadata["onnx"],
        "item_ids": beauty_artifact.item_ids,
        "version": "v1",
    }
    files = {"model.onnx": beauty_artifact.onnx_path}
    first = save_artifact(tmp_path / "out", files, meta)
    assert first.version == "v1" and first.file("weights.pt") is None
    with pytest.raises(ArtifactError, match="exists and is not empty"):
        save_artifact(tmp_path / "out", files, meta)
    assert (
        save_artifact(tmp_path / "out", files, {**meta, "version": "v2"}, overwrite=True).version
        == "v2"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left behind
