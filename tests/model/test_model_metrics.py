"""Ranking metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.metrics import ranks_from_scores, sample_negatives, sampled_ranks, summarize


def test_ranks_count_ties_against_the_target_and_masked_targets_miss() -> None:
    scores = np.array(
        [
            [-np.inf, 0.9, 0.5, 0.5, 0.1],
            [-np.inf, 0.9, -np.inf, 0.2, 0.1],
            [-np.inf, 0.9, 0.5, 0.2, 0.1],
        ]
    )
    ranks = ranks_from_scores(scores, np.array([3, 2, 0]))
    assert ranks.tolist() == [3.0, math.inf, math.inf]


def test_summary_values() -> None:
    m = summarize(np.array([1.0, 3.0, 30.0, math.inf]), ks=(1, 5))
    assert m["HR@1"] == 0.25 and m["HR@5"] == 0.5
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert m["MRR"] == pytest.approx((1 + 1 / 3 + 1 / 30) / 4)


def test_negatives_avoid_the_users_items_and_rank_correctly() -> None:
    rng = np.random.default_rng(0)
    exclude = [np.array([1, 2, 3]), np.array([4])]
    neg = sample_negatives(50, exclude, 20, rng)
    assert neg.shape == (2, 20)
    for row, ex in zip(neg, exclude, strict=True):
        assert len(set(row.tolist())) == 20 and not set(row.tolist()) & set(ex.tolist())
    scores = np.arange(51, dtype=float)[None].repeat(2, 0)
    ranks = sampled_ranks(scores, np.array([50, 0]), neg)
    assert ranks.tolist() == [1.0, math.inf]
    with pytest.raises(ValueError, match="too small"):
        sample_negatives(10, [np.arange(1, 8)], 5, rng)
