"""Export a trained model to ONNX with the catalogue scoring, seen-item masking and top-K inside.

Graph signature (B batch, L <= max_len, Q search tokens, E excluded items, N catalogue + padding):
  inputs   item_ids (B, L) int64, left-padded with 0 · query_buckets (B, Q) int64, 0 = none
           exclude_ids (B, E) int64: items never to return (the user's history), 0 = none
           k (1,) int64: how many items to return, 1 up to the k the artifact was exported with
           (artifacts exported before k was an input lack it and always return that k)
  outputs  top_ids (B, K) int64 best first, never an excluded item nor padding (where fewer than
           K items are left, the tail has score -inf) · top_scores (B, K) float32
           scores (B, N) float32: raw scores of every index, nothing masked (to evaluate)
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from model.artifact import Artifact, save_artifact
from model.network import SASRec

WEIGHTS_FILE = "weights.pt"  # saved next to the graph so a later training can warm-start

OPSET = 18
INPUTS = ("item_ids", "query_buckets", "exclude_ids", "k")
OUTPUTS = ("top_ids", "top_scores", "scores")


class ServingGraph(nn.Module):
    """The exported computation: user vector -> scores of all items -> mask -> top-K."""

    def __init__(self, model: SASRec, k: int) -> None:
        super().__init__()
        self.model = model
        self.k = min(k, model.cfg.n_items)

    def forward(
        self, item_ids: Tensor, query_buckets: Tensor, exclude_ids: Tensor, k: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(B, L), (B, Q), (B, E), (1,) -> top_ids (B, K), top_scores (B, K), scores (B, N).

        ``k`` (1 to ``self.k``, the most the artifact serves) is an input, not a constant: the
        TopK over the catalogue costs about three times as much for 100 items as for 20.
        """
        k = torch.clamp(k[0], min=1, max=self.k)
        user = self.model.user_vectors(item_ids, query_buckets)  # (B, D)
        scores = nn.functional.linear(user, self.model.item_vectors())  # (B, N)
        # Column 0 is padding: exclude it always, whatever the caller sent.
        pad = torch.zeros_like(exclude_ids[:, :1])
        mask_ids = torch.cat([pad, exclude_ids], dim=1)  # (B, X) with X = 1 + E
        # At most X of the best k + X are excluded, so the answer lies among them. Masking these
        # few candidates instead of scattering into the (B, N) matrix saves a full copy of it
        # (at 1M items that copy cost more than the TopK itself).
        n_cand = torch.clamp(mask_ids.shape[1] + k, max=scores.shape[1])
        cand_scores, cand_ids = scores.topk(n_cand, dim=1)  # (B, C)
        excluded = (cand_ids[:, :, None] == mask_ids[:, None, :]).any(-1)  # (B, C)
        cand_scores = cand_scores.masked_fill(excluded, float("-inf"))
        top_scores, pos = cand_scores.topk(k, dim=1)  # (B, K)
        return cand_ids.gather(1, pos), top_scores, scores


def example_inputs(model: SASRec, batch: int = 2) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Small valid inputs, used to trace the graph and to warm sessions."""
    length = min(3, model.cfg.max_len)
    ids = torch.arange(1, batch * length + 1).reshape(batch, length) % model.cfg.n_items + 1
    queries = torch.zeros(batch, 2, dtype=torch.int64)
    return ids, queries, ids.clone(), torch.tensor([model.cfg.top_k])


def export_onnx(model: SASRec, path: str | Path) -> dict:
    """Write the serving graph to ``path``; return its signature for the artifact metadata.

    Uses the TorchScript exporter: on a 2-core CPU it takes under a second where the dynamo
    exporter takes 15-20 s, which matters for the one-minute demo training and the tests.
    Parity with torch is checked by ``check_parity`` and by the contract tests.
    """
    model = model.cpu().eval()
    graph = ServingGraph(model, model.cfg.top_k).eval()
    axes = {
        "item_ids": {0: "batch", 1: "seq_len"},
        "query_buckets": {0: "batch", 1: "n_query"},
        "exclude_ids": {0: "batch", 1: "n_exclude"},
        "top_ids": {0: "batch", 1: "k"},
        "top_scores": {0: "batch", 1: "k"},
        "scores": {0: "batch"},
    }
    with warnings.catch_warnings(), torch.no_grad():
        # The exporter's deprecation notice and its tracer notes are not actionable.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            example_inputs(model, batch=3),
            str(path),
            dynamo=False,
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes=axes,
            opset_version=OPSET,
        )
    _share_item_table(path)
    return signature(path, graph.k)


def _share_item_table(path: str | Path) -> None:
    """Score with ``Gemm(user, item_emb, transB=1)`` instead of a folded transposed copy.

    The TorchScript exporter folds ``item_emb.T`` into a second (dim x catalogue) initializer:
    twice the file and the memory, 512 MB at 1M items. Point the product at the one table.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {i.name: i for i in proto.graph.initializer}
    table = numpy_helper.to_array(inits["model.item_emb.weight"])
    for pos, node in enumerate(proto.graph.node):
        folded = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if folded is None or list(folded.dims) != [table.shape[1], table.shape[0]]:
            continue
        if not np.array_equal(numpy_helper.to_array(folded), table.T):
            continue
        gemm = onnx.helper.make_node(
            "Gemm",
            [node.input[0], "model.item_emb.weight"],
            list(node.output),
            name="item_scores",
            transB=1,
        )
        proto.graph.node.remove(node)
        proto.graph.node.insert(pos, gemm)
        proto.graph.initializer.remove(folded)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
        return


@torch.no_grad()
def check_parity(
    model: SASRec, onnx_path: str | Path, inputs: tuple[Tensor, Tensor, Tensor, Tensor],
    atol: float = 1e-4,
) -> None:
    """Raise AssertionError unless ONNX Runtime and torch give the same top-K ids and scores."""
    import numpy as np
    import onnxruntime as ort

    graph = ServingGraph(model.cpu().eval(), model.cfg.top_k).eval()
    want_ids, want_scores, _ = (t.numpy() for t in graph(*inputs))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(INPUTS, inputs, strict=True)}
    got_ids, got_scores = session.run(["top_ids", "top_scores"], feeds)
    finite = np.isfinite(want_scores)
    np.testing.assert_allclose(got_scores[finite], want_scores[finite], atol=atol, rtol=1e-4)
    # Ids may only differ where scores tie: within tolerance, or both masked (-inf).
    differ = got_ids != want_ids
    close = np.isclose(got_scores, want_scores, atol=atol) | (
        np.isneginf(got_scores) & np.isneginf(want_scores)
    )
    assert not (differ & ~close).any(), f"top-K ids differ: onnx {got_ids} torch {want_ids}"


def signature(path: str | Path, k: int) -> dict:
    """Opset and input/output names, element types and shapes of an exported file."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)

    def describe(values) -> list[dict]:
        return [
            {
                "name": v.name,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            }
            for v in values
        ]

    opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    return {
        "opset": opsets.get("ai.onnx", OPSET),
        "k": k,
        "inputs": describe(proto.graph.input),
        "outputs": describe(proto.graph.output),
    }


def save_trained(model: SASRec, out: Path, metadata: dict[str, Any],
                 overwrite: bool = False) -> Artifact:
    """Export ``model`` to ONNX, keep its weights, and save both as the artifact ``out``.

    ``metadata`` is the artifact's (see ``model.artifact.save_artifact``) without ``onnx``,
    which this adds: the exported graph's signature.
    """
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, weights = Path(tmp) / "model.onnx", Path(tmp) / WEIGHTS_FILE
        model = model.cpu()
        signature = export_onnx(model, onnx_path)
        torch.save(model.state_dict(), weights)
        files = {"model.onnx": onnx_path, WEIGHTS_FILE: weights}
        return save_artifact(out, files, {**metadata, "onnx": signature}, overwrite=overwrite)
