"""The model artifact: a directory with the ONNX graph, optional extra files and ``metadata.json``.

``metadata.json`` records version, parent version, config, the item vocabulary (index -> external
id, index 0 = padding ''), metrics, the training data's range, creation time, the graph signature
and the sha256 of every other file; ``metadata_sha256`` covers the metadata itself. Loading
checks all of them. No torch here: the serving worker loads artifacts with ONNX Runtime alone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.config import ModelConfig
from model.errors import ArtifactError

__all__ = ["Artifact", "ArtifactError", "load_artifact", "save_artifact", "sha256_file"]

FORMAT = "streamrec-model/1"
METADATA = "metadata.json"
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class Artifact:
    """A verified artifact on disk."""

    path: Path
    metadata: dict[str, Any]

    @property
    def version(self) -> str:
        """The artifact's version string."""
        return str(self.metadata["version"])

    @property
    def onnx_path(self) -> Path:
        """The ONNX graph (its external data, if any, lies beside it)."""
        return self.path / self.metadata["onnx"]["file"]

    @property
    def item_ids(self) -> list[str]:
        """External item id of each index; ``item_ids[0]`` is '' (padding)."""
        return self.metadata["item_ids"]

    @property
    def config(self) -> ModelConfig:
        """The model's typed config."""
        return ModelConfig.from_dict(self.metadata["config"])

    def file(self, name: str) -> Path | None:
        """Path of a file listed in the artifact, or None when it lists none of that name."""
        return self.path / name if name in self.metadata["files"] else None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _metadata_digest(metadata: dict[str, Any]) -> str:
    body = {k: v for k, v in metadata.items() if k != "metadata_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_artifact(
    out_dir: str | Path,
    files: dict[str, Path],
    metadata: dict[str, Any],
    overwrite: bool = False,
) -> Artifact:
    """Write a new artifact directory atomically and return it, loaded and verified.

    ``files`` maps names inside the artifact to source files and must hold ``model.onnx``;
    ``metadata`` holds at least ``config``, ``item_ids`` and ``onnx`` (see ``export.signature``).
    ``version`` defaults to the UTC creation time plus the graph's hash prefix.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ArtifactError(f"{out} exists and is not empty: choose another --out or remove it")
    if ONNX_FILE not in files:
        raise ArtifactError(f"an artifact needs {ONNX_FILE}; got {sorted(files)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; an artifact is meant to be read by others
    try:
        for name, src in files.items():
            shutil.copyfile(src, tmp / name)
        hashes = {name: sha256_file(tmp / name) for name in sorted(files)}
        created = datetime.now(UTC)
        meta = {
            "format": FORMAT,
            "version": metadata.get("version")
            or f"{created:%Y%m%dT%H%M%SZ}-{hashes[ONNX_FILE][:8]}",
            "parent_version": None,
            "created_at": created.isoformat(timespec="seconds"),
            **{k: v for k, v in metadata.items() if k != "version"},
            "files": hashes,
        }
        meta["onnx"] = {**meta["onnx"], "file": ONNX_FILE}
        meta["metadata_sha256"] = _metadata_digest(meta)
        (tmp / METADATA).write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_artifact(out)


def load_artifact(path: str | Path) -> Artifact:
    """Read and verify an artifact: format, metadata digest, and sha256 of every listed file."""
    root = Path(path)
    meta_path = root / METADATA
    if not meta_path.is_file():
        raise ArtifactError(
            f"{root} is not a model artifact (no {METADATA}); pass the directory written by "
            "'streamrec train --out DIR'"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{meta_path} is not JSON ({exc}); re-export the artifact") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ArtifactError(f"{meta_path}: format {found!r}, expected {FORMAT!r}")
    if meta.get("metadata_sha256") != _metadata_digest(meta):
        raise ArtifactError(
            f"{meta_path} was changed after the artifact was written (metadata_sha256 does not "
            "match its content); re-download or re-export the artifact"
        )
    for name, expected in meta["files"].items():
        file = root / name
        if not file.is_file():
            raise ArtifactError(f"artifact {root} lacks {name}, listed in its {METADATA}")
        actual = sha256_file(file)
        if actual != expected:
            raise ArtifactError(
                f"artifact {root}: {name} has sha256 {actual}, but {METADATA} records {expected}; "
                "the file was altered or damaged: re-download or re-export the artifact"
            )
    return Artifact(root, meta)
