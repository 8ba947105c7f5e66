"""The contract every model artifact passes: deterministic, ONNX = torch, padding-invariant,
unknown items ignored, seen items never recommended."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.artifact import Artifact
from model.batches import pad_left
from model.data import read_interactions
from model.export import check_parity
from model.network import SASRec
from model.scorer import Scorer

ARTIFACTS = ["beauty_artifact", "events_artifact"]


@pytest.fixture(params=ARTIFACTS)
def artifact(request: pytest.FixtureRequest) -> Artifact:
    return request.getfixturevalue(request.param)


def real_histories(art: Artifact) -> list[list[str]]:
    """The sequences of the file the artifact was trained on."""
    data = art.metadata["training_data"]
    return read_interactions(data["path"], data["format"]).sequences


def test_scores_are_deterministic(artifact: Artifact) -> None:
    histories = real_histories(artifact)[:64]
    first = Scorer(artifact.path, device="cpu").top_k(histories, 10)
    again = Scorer(artifact.path, device="cpu", threads=1).top_k(histories, 10)
    assert [[i for i, _ in r] for r in first] == [[i for i, _ in r] for r in again]
    np.testing.assert_allclose(
        [[s for _, s in r] for r in first], [[s for _, s in r] for r in again], rtol=1e-5
    )


def test_onnx_matches_torch_on_real_sequences(artifact: Artifact) -> None:
    cfg = artifact.config
    model = SASRec(cfg)
    model.load_state_dict(torch.load(artifact.file("weights.pt"), weights_only=True))
    index = {item: i for i, item in enumerate(artifact.item_ids) if i}
    seqs = [np.asarray([index[i] for i in h if i in index]) for h in real_histories(artifact)]
    seq = torch.from_numpy(pad_left(seqs[:100], cfg.max_len))
    exclude = torch.from_numpy(pad_left(seqs[:100], max(map(len, seqs[:100]))))
    queries = torch.randint(0, cfg.n_query_buckets + 1, (len(seq), cfg.max_query_tokens))
    check_parity(model, artifact.onnx_path, (seq, queries, exclude, torch.tensor([cfg.top_k])))
    check_parity(model, artifact.onnx_path, (seq, queries, exclude, torch.tensor([3])))


def test_left_padding_does_not_change_scores(artifact: Artifact) -> None:
    scorer = Scorer(artifact.path, device="cpu")
    index = {item: i for i, item in enumerate(artifact.item_ids) if i}
    seqs = [np.asarray([index[i] for i in h]) for h in real_histories(artifact)[:50]]
    short = [s[-3:] for s in seqs]
    q = np.zeros((len(seqs), 1), np.int64)
    tight = scorer.run_raw(pad_left(short, 3), q, pad_left(short, 3), ["scores"])[0]
    padded = scorer.run_raw(pad_left(short, scorer.max_len), q, pad_left(short, 7), ["scores"])[0]
    np.testing.assert_allclose(tight, padded, rtol=1e-4, atol=1e-5)


def test_unknown_items_are_ignored(artifact: Artifact) -> None:
    scorer = Scorer(artifact.path, device="cpu")
    histories = real_histories(artifact)[:20]
    noisy = [["never-seen-1", *h[:2], "never-seen-2", *h[2:], "never-seen-3"] for h in histories]
    assert scorer.top_k(noisy, 10) == scorer.top_k(histories, 10)
    assert not scorer.knows("never-seen-1")
    assert scorer.top_k([["never-seen-1"]], 5) == scorer.top_k([[]], 5)


def test_seen_items_are_never_recommended(artifact: Artifact) -> None:
    scorer = Scorer(artifact.path, device="cpu")
    histories = real_histories(artifact)
    # Also histories longer than max_len: items beyond what the model reads stay excluded.
    long = [sum(histories[i : i + 5], []) for i in range(0, 50, 5)]
    for history, recs in zip(
        histories + long, scorer.top_k(histories + long, scorer.k), strict=True
    ):
        assert not set(history) & {item for item, _ in recs}
        assert "" not in {item for item, _ in recs}


def test_scores_are_sorted_best_first(artifact: Artifact) -> None:
    for recs in Scorer(artifact.path, device="cpu").top_k(real_histories(artifact)[:30], 15):
        scores = [s for _, s in recs]
        assert scores == sorted(scores, reverse=True) and len(recs) == 15


def test_top_k_is_the_best_of_the_unseen_items(artifact: Artifact) -> None:
    # Brute force from the raw scores: mask padding and history, sort; the graph must agree,
    # also when the history is longer than k (the graph masks only its top candidates).
    scorer = Scorer(artifact.path, device="cpu")
    index = {item: i for i, item in enumerate(artifact.item_ids) if i}
    histories = real_histories(artifact)[:40]
    histories += [sum(histories[i : i + 8], []) for i in range(0, 40, 8)]
    seqs = [np.asarray([index[i] for i in h]) for h in histories]
    q = np.zeros((len(seqs), 1), np.int64)
    raw = scorer.run_raw(pad_left(seqs, scorer.max_len), q, pad_left(seqs, 1), ["scores"])[0]
    for row, (history, recs) in enumerate(zip(seqs, scorer.top_k(histories, 10), strict=True)):
        scores = raw[row].copy()
        scores[0] = -np.inf
        scores[history] = -np.inf
        best = np.argsort(-scores, kind="stable")[:10]
        assert [index[i] for i, _ in recs] == [i for i in best.tolist() if scores[i] > -np.inf]
