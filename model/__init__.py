"""The sequential recommender: network, training, ONNX export, artifacts, scorer, evaluation.

Serving needs only ``model.scorer`` (ONNX Runtime, no torch); training and export need torch.
No Kafka or Faust here: the streaming side composes these modules. The names below are imported
lazily, so ``import model.scorer`` stays free of torch.
"""

from __future__ import annotations

from streamrec.exports import lazy

# Public name -> the module that defines it.
_EXPORTS = {
    # model.artifact
    "Artifact": "model.artifact",
    "METADATA": "model.artifact",
    "load_artifact": "model.artifact",
    "save_artifact": "model.artifact",
    # model.batches
    "pad_left": "model.batches",
    # model.config
    "ModelConfig": "model.config",
    "TrainConfig": "model.config",
    # model.data
    "DataError": "model.data",
    "QueryHashing": "model.data",
    # model.errors
    "ArtifactError": "model.errors",
    "ModelError": "model.errors",
    "ScorerError": "model.errors",
    # model.evaluate
    "evaluate_artifact": "model.evaluate",
    "format_table": "model.evaluate",
    # model.export
    "ServingGraph": "model.export",
    "export_onnx": "model.export",
    # model.incremental
    "Comparison": "model.incremental",
    "SampleBuffer": "model.incremental",
    "compare": "model.incremental",
    "release_decision": "model.incremental",
    "train_candidate": "model.incremental",
    # model.network
    "SASRec": "model.network",
    # model.pipeline
    "TrainJob": "model.pipeline",
    "run_training": "model.pipeline",
    # model.providers
    "cuda_unavailable_reason": "model.providers",
    # model.scorer
    "Scorer": "model.scorer",
    # model.tokens
    "normalize_query": "model.tokens",
    "token_buckets": "model.tokens",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
