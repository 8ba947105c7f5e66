"""SASRec-style causal Transformer over a user's recent items, with optional search-token context.

Shapes: B batch, L sequence length (<= max_len, left-padded with item 0), D model width,
Q search tokens, N catalogue size (+1 for the padding index 0).
Positions are counted from the *end* of the sequence (the newest item is position 0), so left
padding of any length leaves every real item's position, and therefore its output, unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from model.config import ModelConfig


class CausalSelfAttention(nn.Module):
    """Multi-head attention where a position sees itself and earlier non-padding positions."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """x: (B, L, D), allowed: (B, 1, L, L) bool -> (B, L, D)."""
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.n_heads, d // self.n_heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, D/H)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.n_heads)  # (B, H, L, L)
        att = self.drop(att.masked_fill(~allowed, float("-inf")).softmax(-1))
        return self.out((att @ v).transpose(1, 2).reshape(b, length, d))


class Block(nn.Module):
    """Pre-norm Transformer block: attention then a GELU feed-forward, both residual."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.dim)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.dim)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.dim, cfg.dim),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.dim, cfg.dim),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """x: (B, L, D) -> (B, L, D)."""
        x = x + self.drop(self.attn(self.ln1(x), allowed))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRec(nn.Module):
    """Next-item model: item sequence (+ search tokens) -> user vector -> catalogue scores."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        self.query_emb = nn.Embedding(cfg.n_query_buckets + 1, cfg.dim, padding_idx=0)
        self.query_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)  # no bias: no tokens -> no shift
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln = nn.LayerNorm(cfg.dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small normal init for embeddings (keeps the tied output layer well scaled)."""
        for emb in (self.item_emb, self.pos_emb, self.query_emb):
            nn.init.normal_(emb.weight, std=0.02)
            if emb.padding_idx is not None:
                with torch.no_grad():
                    emb.weight[emb.padding_idx].zero_()

    def encode(self, item_ids: Tensor) -> Tensor:
        """item_ids: (B, L) int64, left-padded with 0 -> hidden states (B, L, D)."""
        length = item_ids.shape[1]
        positions = (length - 1) - torch.arange(length, device=item_ids.device)  # (L,) newest = 0
        x = self.item_emb(item_ids) * math.sqrt(self.cfg.dim) + self.pos_emb(positions)
        x = self.drop(x)
        valid = item_ids != 0  # (B, L)
        causal = torch.ones(length, length, dtype=torch.bool, device=item_ids.device).tril()
        steps = torch.arange(length, device=item_ids.device)
        diag = steps[:, None] == steps[None, :]  # (L, L)
        # A query may see its own slot even when it is padding, so no softmax row is all -inf.
        allowed = (causal & valid[:, None, :]) | diag  # (B, L, L)
        allowed = allowed[:, None]  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, allowed)
        return self.ln(x)

    def add_query_context(self, hidden: Tensor, query_buckets: Tensor) -> Tensor:
        """hidden: (..., D), query_buckets: (..., Q) int64 (0 = none) -> (..., D)."""
        counts = (query_buckets != 0).sum(-1, keepdim=True).clamp(min=1)  # (..., 1)
        pooled = self.query_emb(query_buckets).sum(-2) / counts  # (..., D)
        return hidden + self.query_proj(pooled)

    def user_vectors(self, item_ids: Tensor, query_buckets: Tensor) -> Tensor:
        """Vector of the next item to come: (B, L), (B, Q) -> (B, D)."""
        return self.add_query_context(self.encode(item_ids)[:, -1], query_buckets)

    def item_vectors(self) -> Tensor:
        """Output embeddings of every index, padding included: (N + 1, D)."""
        return self.item_emb.weight
