"""The pipeline benchmark's per-stage percentiles, read from a worker's real metrics."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from benchmarks.bench_pipeline import median_of, stage_quantiles, written_within
from streamrec.harness import samples
from streams.metrics import WorkerMetrics


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


def test_share_written_within_the_goal_counts_only_what_came_after_the_first_reading() -> None:
    metrics = WorkerMetrics()
    name = "streamrec_event_to_recommendation_seconds_bucket"
    for _ in range(10):
        metrics.latency_seconds.observe(0.3)  # the warm-up: slow, and not to be counted
    before = samples(generate_latest(metrics.registry).decode(), name)
    for _ in range(97):
        metrics.latency_seconds.observe(0.015)
    for _ in range(3):
        metrics.latency_seconds.observe(0.08)
    after = samples(generate_latest(metrics.registry).decode(), name)

    assert written_within(before, after, 0.05) == {"recommendations": 100,
                                                   "within_50_ms_pct": 97.0}
    assert written_within([], after, 0.05) == {"recommendations": 110,
                                               "within_50_ms_pct": 88.18}
    with pytest.raises(ValueError, match="not a bucket bound"):
        written_within(before, after, 0.04)


def test_median_of_runs_takes_the_median_share_written_within_the_goal() -> None:
    runs = [{"events": 10, "recommendations": 10, "p99_ms": p99,
             "worker_written": {"recommendations": 10, "within_50_ms_pct": share}}
            for p99, share in ((30.0, 99.9), (80.0, 97.0), (40.0, 99.5))]
    out = median_of(runs)
    assert out["p99_ms"] == 40.0
    assert out["worker_written_within_50_ms_pct"] == 99.5
    assert out["each"] == runs
