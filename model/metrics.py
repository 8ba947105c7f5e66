"""Ranking metrics from the 1-based rank of each user's target (numpy only)."""

from __future__ import annotations

import numpy as np

KS: tuple[int, ...] = (1, 5, 10, 20)


def ranks_from_scores(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each target among its row's scores: (B, N), (B,) -> (B,) float.

    Ties count against the target (pessimistic), and a target whose score is -inf (masked,
    e.g. already seen) or that is 0 (unknown to the model) gets rank inf, i.e. a miss.
    """
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets]
    ranks = (scores >= target_scores[:, None]).sum(1).astype(np.float64)
    ranks[~np.isfinite(target_scores) | (targets == 0)] = np.inf
    return ranks


def summarize(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """HR@K, NDCG@K for each K and MRR (over the whole ranking), as plain floats."""
    if len(ranks) == 0:
        raise ValueError("no users to evaluate")
    out: dict[str, float] = {}
    gains = 1.0 / np.log2(ranks + 1.0)
    for k in ks:
        hit = ranks <= k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.where(hit, gains, 0.0).mean())
    out["MRR"] = float((1.0 / ranks).mean())
    return out


def sample_negatives(
    n_items: int, exclude: list[np.ndarray], n_neg: int, rng: np.random.Generator
) -> np.ndarray:
    """Per user, ``n_neg`` distinct items of 1..n_items outside ``exclude[u]``: (U, n_neg)."""
    out = np.empty((len(exclude), n_neg), dtype=np.int64)
    for u, ex in enumerate(exclude):
        banned = set(ex.tolist())
        if n_items - len(banned) < n_neg:
            raise ValueError(f"catalogue of {n_items} items too small for {n_neg} negatives")
        picked: dict[int, None] = {}
        while len(picked) < n_neg:
            for i in rng.integers(1, n_items + 1, size=2 * n_neg).tolist():
                if i not in banned and len(picked) < n_neg:
                    picked[i] = None
        out[u] = list(picked)
    return out


def sampled_ranks(scores: np.ndarray, targets: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Rank of the target among itself and its sampled negatives: (B, N), (B,), (B, S) -> (B,)."""
    rows = np.arange(len(targets))[:, None]
    candidates = np.concatenate([targets[:, None], negatives], axis=1)
    sub = scores[rows, candidates]  # (B, 1 + S), column 0 is the target
    ranks = (sub >= sub[:, :1]).sum(1).astype(np.float64)
    ranks[~np.isfinite(sub[:, 0]) | (targets == 0)] = np.inf
    return ranks
