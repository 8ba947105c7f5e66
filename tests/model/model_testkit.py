"""Helpers of the model tests: tiny configs, event files, tiny training runs."""

from __future__ import annotations

import json
from pathlib import Path

from model.artifact import Artifact
from model.config import ModelConfig, TrainConfig
from model.data import QueryHashing
from model.pipeline import TrainJob, run_training

KEY = b"test-secret"
TINY = ModelConfig(
    n_items=1,
    max_len=8,
    dim=16,
    n_layers=1,
    n_heads=1,
    dropout=0.1,
    n_query_buckets=64,
    max_query_tokens=4,
    top_k=20,
)


def write_events(path: Path) -> Path:
    """A small JSON-lines event file with clicks and searches of 60 users."""
    events = []
    for u in range(60):
        for t in range(6):
            if t == 2:
                events.append(
                    {
                        "type": "search",
                        "user_id": f"u{u}",
                        "query": f"Red Shoe {u % 3}",
                        "timestamp": 1_700_000_000_000 + u * 1000 + t,
                    }
                )
            events.append(
                {
                    "type": "click",
                    "user_id": f"u{u}",
                    "item_id": f"sku-{(u + t) % 25}",
                    "timestamp": "2024-01-02T03:04:05Z",
                    "event_id": f"e{u}-{t}",
                }
            )
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def train_tiny(
    data: Path, fmt: str, out: Path, seed: int = 1, epochs: int = 2, init_from: Path | None = None
) -> Artifact:
    """Train the tiny config for a few epochs and write its artifact."""
    job = TrainJob(
        data,
        fmt,
        out,
        TINY,
        TrainConfig(epochs=epochs, seed=seed, threads=2),
        QueryHashing(KEY, TINY.n_query_buckets, TINY.max_query_tokens),
        device="cpu",
        init_from=init_from,
    )
    return run_training(job)
