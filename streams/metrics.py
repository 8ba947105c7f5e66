"""Prometheus metrics of a worker, served at ``/metrics`` on its web port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.007, 0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1,
                 0.2, 0.5, 1, 2, 5)

# Where a batch's time goes, in order (``streamrec_batch_stage_seconds{stage=...}``).
STAGES = {
    "gather": "oldest event's Kafka timestamp to the batch's start (transit and batch window)",
    "prepare": "decode, state updates, samples and the scorer's input (event loop)",
    "queue": "waiting for the previous batch to be scored and written",
    "score": "the scorer call (ONNX Runtime, pool thread), start to results",
    "write": "recommendation records encoded and handed to the producer",
    "settle": "until the broker acknowledged everything the batch wrote",
}


class WorkerMetrics:
    """Every metric the worker exports, in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events_in = Counter("streamrec_events_in", "Events taken from the events topic",
                                 registry=r)
        self.events_applied = Counter("streamrec_events_applied",
                                      "Events applied to user state", registry=r)
        self.events_duplicate = Counter(
            "streamrec_events_duplicate", "Redelivered events recognised and skipped", registry=r)
        self.events_dead_lettered = Counter(
            "streamrec_events_dead_lettered", "Events sent to the dead-letter topic",
            ["stage"], registry=r)
        self.samples = Counter("streamrec_samples", "Anonymised training samples emitted",
                               registry=r)
        self.recommendations = Counter("streamrec_recommendations",
                                       "Recommendations published", ["strategy"], registry=r)
        self.batch_size = Histogram("streamrec_batch_size", "Events per micro-batch",
                                    buckets=(1, 4, 16, 64, 128, 256, 512, 1024, 2048),
                                    registry=r)
        self.scoring_seconds = Histogram("streamrec_scoring_seconds",
                                         "Time of one scorer call", buckets=LATENCY_BUCKETS,
                                         registry=r)
        self.batch_stage = Histogram(
            "streamrec_batch_stage_seconds",
            "Time of each stage of a micro-batch: " + "; ".join(f"{k}: {v}" for k, v in
                                                                STAGES.items()),
            ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.latency_seconds = Histogram(
            "streamrec_event_to_recommendation_seconds",
            "From the event's Kafka timestamp to its recommendation", buckets=LATENCY_BUCKETS,
            registry=r)
        self.consumer_lag = Gauge("streamrec_consumer_lag", "Records not yet read, per partition",
                                  ["partition"], registry=r)
        self.users_in_state = Gauge("streamrec_users_in_state",
                                    "Users in this worker's state (RocksDB estimate)", registry=r)
        self.events_misrouted = Counter(
            "streamrec_events_misrouted", "Events read on another partition than their key's "
            "(murmur2), by what was done with them", ["action"], registry=r)
        self.stalled_seconds = Gauge(
            "streamrec_stalled_seconds", "How long this worker's assigned events partitions "
            "have had lag with nothing committed (0 while it makes progress)", registry=r)
        self.log_lines_suppressed = Counter(
            "streamrec_log_lines_suppressed", "Repeated log lines summarised instead of written",
            ["logger"], registry=r)
        self.model = Info("streamrec_model", "The model the worker serves", registry=r)
        self.model_swaps = Counter("streamrec_model_swaps", "Hot swaps of the model", ["result"],
                                   registry=r)
