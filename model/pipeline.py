"""From a dataset file to a verified artifact: read, split, train, test, export, save."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from model.artifact import Artifact, load_artifact
from model.config import ModelConfig, TrainConfig
from model.data import (
    Format,
    Interactions,
    QueryHashing,
    Vocabulary,
    leave_one_out,
    read_interactions,
)
from model.errors import ArtifactError
from model.export import WEIGHTS_FILE, save_trained
from model.metrics import summarize
from model.network import SASRec
from model.tokens import key_fingerprint
from model.train import full_ranks, pick_device, train

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class TrainJob:
    """Everything ``streamrec train`` asks for, as plain values."""

    dataset: Path
    fmt: Format
    out: Path
    model: ModelConfig  # n_items is filled in from the data
    train: TrainConfig
    hashing: QueryHashing
    device: str = "auto"
    init_from: Path | None = None
    checkpoint: Path | None = None
    overwrite: bool = False


def run_training(job: TrainJob) -> Artifact:
    """Train on ``job.dataset`` and write the artifact to ``job.out``."""
    data = read_interactions(job.dataset, job.fmt, job.hashing)
    parent = load_artifact(job.init_from) if job.init_from else None
    vocab = Vocabulary.build(data.sequences)
    if parent is not None:  # keep the parent's indices; new items are appended
        known = set(parent.item_ids)
        vocab = Vocabulary([*parent.item_ids, *(i for i in vocab.item_ids[1:] if i not in known)])
    mc = dataclasses.replace(parent.config if parent else job.model, n_items=len(vocab))
    split = leave_one_out(
        [vocab.encode(s) for s in data.sequences], data.queries, mc.max_query_tokens
    )
    init = _grown_weights(parent, mc) if parent else None
    log.info(
        "training on %s: %d users, %d items, %d clicks",
        job.dataset,
        len(data.users),
        len(vocab),
        sum(map(len, data.sequences)),
    )
    result = train(split, mc, job.train, job.device, job.checkpoint, init)
    dev = pick_device(job.device)
    test = (
        summarize(
            full_ranks(
                result.model.to(dev),
                split.test_inputs(),
                split.test_targets,
                split.test_queries,
                dev,
            )
        )
        if len(split.val_users)
        else {}
    )
    metrics = {
        "protocol": "FULL, leave-one-out, history masked",
        "val": result.val_metrics,
        "test": test,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "train_seconds": round(result.seconds, 1),
        "stopped_by": result.stopped_by,
        "history": result.history,
    }
    meta = {
        "parent_version": parent.version if parent else None,
        "config": mc.to_dict(),
        "train_config": job.train.to_dict(),
        "item_ids": vocab.item_ids,
        "metrics": metrics,
        "training_data": _data_record(job, data),
        "query_hashing": {
            "n_buckets": job.hashing.n_buckets,
            "key_fingerprint": key_fingerprint(job.hashing.key),
        },
    }
    return save_trained(result.model, job.out, meta, overwrite=job.overwrite)


def _grown_weights(parent: Artifact, mc: ModelConfig) -> dict[str, torch.Tensor]:
    """The parent's weights, with fresh item rows for items the parent did not know."""
    path = parent.file(WEIGHTS_FILE)
    if path is None:
        raise ArtifactError(f"artifact {parent.path} has no {WEIGHTS_FILE}: cannot warm-start")
    old = torch.load(path, map_location="cpu", weights_only=True)
    state = SASRec(mc).state_dict()
    n_old = old["item_emb.weight"].shape[0]
    for name, tensor in old.items():
        if name == "item_emb.weight":
            state[name][:n_old] = tensor
        else:
            state[name] = tensor
    return state


def _data_record(job: TrainJob, data: Interactions) -> dict:
    """Which data the model saw: file, format, hash, size and time range (when the file has one)."""
    digest = hashlib.sha256(job.dataset.read_bytes()).hexdigest()
    first, last = data.time_range if data.time_range else (None, None)
    return {
        "path": str(job.dataset),
        "format": job.fmt,
        "sha256": digest,
        "users": len(data.users),
        "clicks": sum(map(len, data.sequences)),
        "first_event": first,
        "last_event": last,
    }
