"""Scorer behaviour: API, limits, provider choice, signature check, hot swap."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from model.artifact import Artifact, save_artifact
from model.errors import ArtifactError, ScorerError
from model.providers import CPU_EP, CUDA_EP, cuda_unavailable_reason
from model.scorer import SMALL_CALL_CELLS, Scorer

NO_CUDA = cuda_unavailable_reason()
needs_cuda = pytest.mark.skipif(NO_CUDA is not None, reason=f"CUDA path: {NO_CUDA}")


def test_attributes(beauty_artifact: Artifact) -> None:
    scorer = Scorer(beauty_artifact.path, device="cpu")
    assert scorer.version == beauty_artifact.version
    assert scorer.provider == CPU_EP
    assert scorer.max_len == beauty_artifact.config.max_len == 8
    assert scorer.k == 20
    assert scorer.knows(beauty_artifact.item_ids[1]) and not scorer.knows("")
    assert scorer.top_k([], 5) == []


def test_empty_history_gets_the_same_nonempty_list(beauty_artifact: Artifact) -> None:
    recs = Scorer(beauty_artifact.path, device="cpu").top_k([[], []], 5)
    assert recs[0] == recs[1] and len(recs[0]) == 5


def test_k_and_buckets_are_checked(events_artifact: Artifact) -> None:
    scorer = Scorer(events_artifact.path, device="cpu")
    with pytest.raises(ValueError, match="k must be in 1..20"):
        scorer.top_k([["sku-1"]], 21)
    with pytest.raises(ScorerError, match="0..64"):
        scorer.top_k([["sku-1"]], 5, queries=[[65]])
    with pytest.raises(ValueError, match="query lists"):
        scorer.top_k([["sku-1"]], 5, queries=[[1], [2]])


def test_search_context_changes_scores(events_artifact: Artifact) -> None:
    scorer = Scorer(events_artifact.path, device="cpu")
    plain = scorer.top_k([["sku-1", "sku-2"]], 20)[0]
    searched = scorer.top_k([["sku-1", "sku-2"]], 20, queries=[[3, 17, 40]])[0]
    assert dict(plain) != dict(searched)
    assert scorer.top_k([["sku-1"]], 20, queries=[[]]) == scorer.top_k([["sku-1"]], 20)


def test_device_choice_is_honest(beauty_artifact: Artifact) -> None:
    reason = cuda_unavailable_reason()
    if reason is None:  # a machine with a usable GPU
        assert Scorer(beauty_artifact.path, device="cuda").provider == CUDA_EP
    else:
        with pytest.raises(ScorerError, match="device 'cuda' asked for"):
            Scorer(beauty_artifact.path, device="cuda")
        assert Scorer(beauty_artifact.path).provider == CPU_EP


def test_input_mismatch_shows_both_lists(beauty_artifact: Artifact, tmp_path: Path) -> None:
    meta = json.loads(json.dumps(beauty_artifact.metadata))
    meta["onnx"]["inputs"][0]["name"] = "items"
    files = {name: beauty_artifact.path / name for name in meta.pop("files")}
    for key in ("format", "created_at", "metadata_sha256"):
        meta.pop(key)
    bad = save_artifact(tmp_path / "bad", files, meta)
    with pytest.raises(ScorerError) as err:
        Scorer(bad.path, device="cpu")
    assert "('item_ids', 'tensor(int64)')" in str(err.value)
    assert "('items', 'tensor(int64)')" in str(err.value)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_hot_swap_under_load(
    beauty_artifact: Artifact, events_artifact: Artifact, tmp_path: Path, device: str
) -> None:
    scorer = Scorer(beauty_artifact.path, device=device)
    errors: list[BaseException] = []
    versions: set[str] = set()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                recs = scorer.top_k([["sku-1", "1", "2"]] * 16, 5)
                assert len(recs) == 16 and all(len(r) == 5 for r in recs)
                versions.add(scorer.version)
            except BaseException as exc:  # noqa: BLE001 - any failure must reach the test
                errors.append(exc)

    threads = [threading.Thread(target=serve) for _ in range(3)]
    for t in threads:
        t.start()
    for target in (events_artifact, beauty_artifact, events_artifact):
        assert scorer.swap(target.path) == target.version
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert scorer.version == events_artifact.version
    assert versions == {beauty_artifact.version, events_artifact.version}


def test_failed_swap_keeps_the_old_model(
    beauty_artifact: Artifact, events_artifact: Artifact, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(events_artifact.path, broken)
    with (broken / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    scorer = Scorer(beauty_artifact.path, device="cpu")
    before = scorer.top_k([["1", "2"]], 5)
    with pytest.raises(ArtifactError, match="sha256"):
        scorer.swap(broken)
    assert scorer.version == beauty_artifact.version
    assert scorer.top_k([["1", "2"]], 5) == before


def test_a_history_of_almost_the_whole_catalogue_leaves_only_the_unseen(
        beauty_artifact: Artifact) -> None:
    # Fewer unseen items than k: the masked (-inf) and padding entries are dropped, and the
    # other user of the same call still gets a full list.
    scorer = Scorer(beauty_artifact.path, device="cpu")
    items = beauty_artifact.item_ids[1:]
    almost_all, short = scorer.top_k([items[7:], items[:1]], 20)
    assert {item for item, _ in almost_all} == set(items[:7])
    assert len(short) == 20 and items[0] not in {item for item, _ in short}
    assert all(s > float("-inf") for _, s in almost_all + short)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: one session")
def test_small_calls_run_on_one_thread_with_the_same_results(beauty_artifact: Artifact) -> None:
    scorer = Scorer(beauty_artifact.path, device="cpu")
    loaded = scorer._loaded
    per_call = SMALL_CALL_CELLS // (beauty_artifact.config.n_items + 1)  # users in a small call
    assert loaded.small is not None and per_call >= 8
    assert loaded.small.get_session_options().intra_op_num_threads == 1
    assert loaded.session_for(per_call) is loaded.small
    assert loaded.session_for(per_call + 1) is loaded.session
    items = beauty_artifact.item_ids[1:]
    histories = [items[i % 50 : i % 50 + 1 + i % 7] for i in range(per_call + 1)]
    assert scorer.prepare(histories[:per_call], 10).small  # the worker runs it on its loop
    assert not scorer.prepare(histories, 10).small  # handed to the worker's scoring thread
    together = scorer.top_k(histories, 10)  # one call, on the multi-threaded session
    step = max(1, per_call // 12)
    for history, recs in zip(histories[::step], together[::step], strict=True):
        alone = scorer.top_k([history], 10)[0]  # on the one-thread session
        assert [i for i, _ in alone] == [i for i, _ in recs]
        assert [s for _, s in alone] == pytest.approx([s for _, s in recs], rel=1e-4, abs=1e-5)


def test_no_second_session_when_told_to_use_one_thread(beauty_artifact: Artifact) -> None:
    loaded = Scorer(beauty_artifact.path, device="cpu", threads=1)._loaded
    assert loaded.small is None and loaded.session_for(1) is loaded.session


def test_an_artifact_whose_graph_does_not_take_k_still_serves(beauty_artifact: Artifact,
                                                              tmp_path: Path) -> None:
    import warnings

    import torch
    from torch import nn

    from model.export import OPSET, ServingGraph, signature
    from model.network import SASRec

    model = SASRec(beauty_artifact.config)
    model.load_state_dict(torch.load(beauty_artifact.file("weights.pt"), weights_only=True))
    graph = ServingGraph(model.eval(), beauty_artifact.config.top_k).eval()

    class FixedK(nn.Module):  # the graph's signature in artifacts exported before k was an input
        def __init__(self) -> None:
            super().__init__()
            self.graph = graph

        def forward(self, item_ids, query_buckets, exclude_ids):  # noqa: ANN001, ANN202
            return self.graph(item_ids, query_buckets, exclude_ids, torch.tensor([graph.k]))

    onnx_path = tmp_path / "model.onnx"
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    axes = {"item_ids": {0: "b", 1: "l"}, "query_buckets": {0: "b", 1: "q"},
            "exclude_ids": {0: "b", 1: "e"}, "top_ids": {0: "b"}, "top_scores": {0: "b"},
            "scores": {0: "b"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(FixedK().eval(), (ids, torch.zeros(2, 1, dtype=torch.int64), ids),
                          str(onnx_path), dynamo=False,
                          input_names=["item_ids", "query_buckets", "exclude_ids"],
                          output_names=["top_ids", "top_scores", "scores"], dynamic_axes=axes,
                          opset_version=OPSET)
    meta = json.loads(json.dumps(beauty_artifact.metadata))
    for key in ("files", "format", "created_at", "metadata_sha256", "version"):
        meta.pop(key)
    meta["onnx"] = signature(onnx_path, graph.k)
    old = save_artifact(tmp_path / "old", {"model.onnx": onnx_path,
                                           "weights.pt": beauty_artifact.file("weights.pt")}, meta)
    assert [i["name"] for i in old.metadata["onnx"]["inputs"]] == [
        "item_ids", "query_buckets", "exclude_ids"]
    items = beauty_artifact.item_ids[1:]
    histories = [items[:3], items[10:12], []]
    served = Scorer(old.path, device="cpu").top_k(histories, 5)
    current = Scorer(beauty_artifact.path, device="cpu").top_k(histories, 5)
    assert [[i for i, _ in r] for r in served] == [[i for i, _ in r] for r in current]
    assert all(len(r) == 5 for r in served)


@needs_cuda
def test_cuda_scores_and_ranks_as_the_cpu(beauty_artifact: Artifact) -> None:
    # Same graph on both providers: every score close, and each CUDA top-k item one whose CPU
    # score reaches the CPU's k-th best (ties and rounding may order near-equal items apart).
    cpu = Scorer(beauty_artifact.path, device="cpu")
    cuda = Scorer(beauty_artifact.path, device="cuda")
    assert cuda.provider == CUDA_EP
    items = beauty_artifact.item_ids[1:]
    rng = np.random.default_rng(5)
    histories = [list(rng.choice(items, size=int(rng.integers(0, 60)))) for _ in range(200)]
    histories += [items[5:], []]  # almost the whole catalogue seen; no history at all
    queries = [list(rng.integers(0, cuda.n_query_buckets + 1, size=3)) for _ in histories]
    job = cpu.prepare(histories, cpu.k, queries)
    for seq, q, exclude in job.chunks:
        (want,) = cpu.run_raw(seq, q, exclude, ["scores"])  # every item's score, unmasked
        got, got_ids = cuda.run_raw(seq, q, exclude, ["scores", "top_ids"])
        err = float(np.abs(got - want).max())
        assert err < 2e-3  # float32 on CPU; TF32 matrix products on recent GPUs: ~1e-3
        # The CPU's k-th best unseen score; a CUDA pick may fall below it only by rounding:
        # an item may pass another when their scores lie within twice the error.
        unseen = want.copy()
        np.put_along_axis(unseen, exclude, -np.inf, axis=1)
        unseen[:, 0] = -np.inf  # padding
        kth = np.sort(unseen, axis=1)[:, -cpu.k][:, None]
        picked = np.take_along_axis(unseen, got_ids, axis=1)
        assert ((picked >= kth - 2 * err - 1e-6) | ~np.isfinite(kth)).all()
        assert (np.isfinite(picked) | ~np.isfinite(kth)).all()  # no seen item recommended
    for k in (20, 3):
        for a, b in zip(cuda.top_k(histories, k, queries), cpu.top_k(histories, k, queries),
                        strict=True):
            assert len(a) == len(b) and {i for i, _ in a} <= set(items)
    assert {i for i, _ in cuda.top_k([items[5:]], 20)[0]} == set(items[:5])
