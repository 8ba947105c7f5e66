"""Evaluate an artifact on a dataset through its ONNX graph: FULL and sampled protocols, plus a
popularity baseline, next to the published figures for the same file (no torch)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.batches import pad_left
from model.data import Format, QueryHashing, read_interactions
from model.errors import ModelError
from model.metrics import KS, ranks_from_scores, sample_negatives, sampled_ranks, summarize
from model.scorer import Scorer
from streamrec.errors import ConfigError

# Published figures (HR@10, NDCG@10) keyed by the sha256 of the exact file they were measured on.
PUBLISHED: dict[str, list[tuple[str, str, float, float]]] = {
    "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8": [  # Beauty, S3-Rec
        ("PopRec", "FULL", 0.0152, 0.0068),
        ("SASRec", "FULL", 0.0605, 0.0318),
        ("S3-Rec", "FULL", 0.0647, 0.0327),
        ("ICLRec", "FULL", 0.0744, 0.0403),
        ("SASRec", "S99", 0.4696, 0.3156),
        ("S3-Rec", "S99", 0.5506, 0.3732),
    ],
    "f480b7a7403852342ffd8f9809bb30697dd669be31813d0e204b698fec86ef49": [  # Beauty, BERT4Rec
        ("BERT4Rec", "FULL", 0.0338, 0.0187),
        ("SASRec (BCE)", "FULL", 0.0246, 0.0126),
        ("SASRec+ (CE)", "FULL", 0.0533, 0.0327),
    ],
}


@dataclass(frozen=True)
class EvalCase:
    """Histories, targets and search context of the evaluated users (indices of the model)."""

    inputs: list[np.ndarray]
    targets: np.ndarray  # 0 where the target item is unknown to the model
    queries: np.ndarray  # (U, Q)


def build_case(
    scorer: Scorer, dataset: Path, fmt: Format, hashing: QueryHashing, split: str
) -> EvalCase:
    """Leave-one-out on the raw file: target = last (test) or second-to-last (val) item."""
    data = read_interactions(dataset, fmt, hashing)
    cut = 1 if split == "test" else 2
    index = {item: i for i, item in enumerate(scorer.artifact.item_ids) if i}
    inputs, targets, queries = [], [], []
    width = scorer.artifact.config.max_query_tokens
    for u, seq in enumerate(data.sequences):
        if len(seq) < 3:
            continue
        history = seq[: len(seq) - cut]
        inputs.append(np.asarray([index[i] for i in history if i in index], dtype=np.int64))
        targets.append(index.get(seq[len(seq) - cut], 0))
        ctx = data.queries[u][len(seq) - cut][-width:] if data.queries else []
        queries.append([0] * (width - len(ctx)) + list(ctx))
    if not inputs:
        raise ModelError(f"{dataset}: no user has the 3 clicks a leave-one-out split needs")
    return EvalCase(inputs, np.asarray(targets, np.int64), np.asarray(queries, np.int64))


def model_scores(scorer: Scorer, case: EvalCase, start: int, stop: int) -> np.ndarray:
    """Scores of every item for users ``start:stop``, their histories masked: (B, N + 1)."""
    part = case.inputs[start:stop]
    longest = max(1, max(len(s) for s in part))
    seq = pad_left(part, min(scorer.max_len, longest))
    (scores,) = scorer.run_raw(seq, case.queries[start:stop], pad_left(part, longest), ["scores"])
    scores = scores.copy()
    scores[:, 0] = -np.inf  # padding
    for row, history in enumerate(part):
        scores[row, history] = -np.inf  # as served: seen items are never recommended
    return scores


def evaluate_artifact(
    artifact: Path,
    dataset: Path,
    fmt: Format,
    hashing: QueryHashing,
    negatives: int = 100,
    seed: int = 0,
    split: str = "test",
    device: str = "auto",
    threads: int | None = None,
    batch_size: int = 256,
) -> dict:
    """Metrics of the model and of popularity, FULL and sampled, as a JSON-ready dict."""
    started = time.monotonic()
    scorer = Scorer(artifact, device=device, threads=threads)
    case = build_case(scorer, dataset, fmt, hashing, split)
    n_items = scorer.artifact.config.n_items
    rng = np.random.default_rng(seed)
    exclude = [np.append(s, t) for s, t in zip(case.inputs, case.targets, strict=True)]
    try:
        neg = sample_negatives(n_items, exclude, negatives, rng)
    except ValueError as exc:  # fewer items outside some user's history than negatives asked
        raise ConfigError(f"{exc}: ask for fewer (--negatives)") from None
    popularity = np.bincount(np.concatenate(case.inputs), minlength=n_items + 1).astype(np.float32)
    ranks: dict[str, list[np.ndarray]] = {k: [] for k in ("full", "sampled", "pop", "pop_s")}
    for start in range(0, len(case.inputs), batch_size):
        stop = start + batch_size
        y = case.targets[start:stop]
        scores = model_scores(scorer, case, start, stop)
        pop = np.broadcast_to(popularity, scores.shape).copy()
        for row, hist in enumerate(case.inputs[start:stop]):
            pop[row, hist] = -np.inf
        pop[:, 0] = -np.inf
        ranks["full"].append(ranks_from_scores(scores, y))
        ranks["sampled"].append(sampled_ranks(scores, y, neg[start:stop]))
        ranks["pop"].append(ranks_from_scores(pop, y))
        ranks["pop_s"].append(sampled_ranks(pop, y, neg[start:stop]))
    r = {k: np.concatenate(v) for k, v in ranks.items()}
    sampled = f"S{negatives}"
    return {
        "artifact": scorer.version,
        "provider": scorer.provider,
        "dataset": str(dataset),
        "dataset_sha256": hashlib.sha256(dataset.read_bytes()).hexdigest(),
        "format": fmt,
        "split": split,
        "users": len(case.targets),
        "unknown_targets": int((case.targets == 0).sum()),
        "negatives": negatives,
        "seed": seed,
        "model": {"FULL": summarize(r["full"], KS), sampled: summarize(r["sampled"], KS)},
        "popularity": {"FULL": summarize(r["pop"], KS), sampled: summarize(r["pop_s"], KS)},
        "seconds": round(time.monotonic() - started, 1),
    }


def format_table(report: dict) -> str:
    """The report as a text table, with published figures for the same file below it."""
    cols = [f"{m}@{k}" for m in ("HR", "NDCG") for k in KS] + ["MRR"]
    lines = [
        f"{report['split']} users: {report['users']}  (model {report['artifact']}, "
        f"{report['provider']}, unknown targets {report['unknown_targets']})",
        f"{'model':<16}{'protocol':<9}" + "".join(f"{c:>9}" for c in cols),
    ]
    for who in ("model", "popularity"):
        for proto, metrics in report[who].items():
            lines.append(f"{who:<16}{proto:<9}" + "".join(f"{metrics[c]:>9.4f}" for c in cols))
    published = PUBLISHED.get(report["dataset_sha256"])
    if published:
        lines.append("published on this file (HR@10, NDCG@10):")
        lines += [
            f"  {name:<14}{proto:<6}{hr:>8.4f}{ndcg:>9.4f}" for name, proto, hr, ndcg in published
        ]
    return "\n".join(lines)
