"""The pipeline benchmark's per-stage percentiles, read from a worker's real metrics."""

from __future__ import annotations

from prometheus_client import generate_latest

from benchmarks.bench_pipeline import stage_quantiles
from streams.metrics import WorkerMetrics
from tests.integration.workers import samples


def test_stage_percentiles_come_from_the_histogram_buckets() -> None:
    metrics = WorkerMetrics()
    for _ in range(98):
        metrics.batch_stage.labels("score").observe(0.003)  # bucket (0.002, 0.004]
    for _ in range(2):
        metrics.batch_stage.labels("score").observe(0.06)  # bucket (0.05, 0.07]
    metrics.batch_stage.labels("queue").observe(9.0)  # beyond the last finite bucket
    exposition = generate_latest(metrics.registry).decode()

    stages = stage_quantiles(samples(exposition, "streamrec_batch_stage_seconds_bucket"))

    assert set(stages) == {"score", "queue"}  # stages never observed are left out
    assert stages["score"]["batches"] == 100
    assert 2.0 < stages["score"]["p50_ms"] <= 4.0
    assert 50.0 < stages["score"]["p99_ms"] <= 70.0
    assert stages["queue"]["p50_ms"] == 5000.0  # reported as the last finite bound
