"""Typed, frozen configuration of the model and its training (no torch: the artifact reads it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the SASRec-style network; stored in every artifact."""

    n_items: int  # catalogue size; indices 1..n_items, 0 is padding
    max_len: int = 50  # most recent items the model reads
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.3
    n_query_buckets: int = 4096  # search-token buckets; 0 turns the search context off
    max_query_tokens: int = 16  # most recent search tokens the model reads
    top_k: int = 100  # items the exported graph returns per user

    def __post_init__(self) -> None:
        if self.n_items < 1 or self.max_len < 1 or self.dim % self.n_heads:
            raise ValueError(f"invalid model config: {self}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; defaults follow SASRec+ (full-softmax cross-entropy, Adam)."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: Literal["ce", "sampled"] = "ce"  # full softmax, or sampled softmax for huge catalogues
    n_negatives: int = 1024  # shared uniform negatives per batch when loss == "sampled"
    batching: Literal["random", "length"] = "random"  # shuffled users, or similar lengths per batch
    patience: int = 10  # evaluations without a better validation NDCG@10 before stopping
    eval_every: int = 1  # epochs between validations
    val_sample: int = 0  # validate on this many users (fixed random subset); 0 = all
    max_minutes: float | None = None  # wall-clock budget; the best model so far is kept
    seed: int = 42
    threads: int = 2

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)
