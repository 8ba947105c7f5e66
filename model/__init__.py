"""The sequential recommender: network, training, ONNX export, artifacts, scorer, evaluation.

Serving needs only ``model.scorer`` (ONNX Runtime, no torch); training and export need torch.
No Kafka or Faust here: the streaming side composes these modules.
"""
