"""The Faust app of streamrec: the only module that creates the app, its topics and its tables.

Wiring only: the data path is ``streams.worker.BatchWorker`` (its docstring follows a click from
the producer to its recommendation), fed a micro-batch at a time by ``streams.intake``; the
HTTP endpoints are in ``streams.views``; every Faust internal used is in ``streams.faust_adapter``.

Data path (one worker, or many in one consumer group, each on its share of the partitions)::

    events (Avro, keyed by user)
      → decode + validate ──bad──▶ events.dlq (raw bytes, topic/partition/offset, reason)
      → user-state table (RocksDB via rocksdict, changelog-backed; idempotent by source offset)
      → micro-batch (N records or T ms; several events of a user coalesce into one request)
      → ONNX Runtime scorer (model/, CUDA when present) or stream popularity for cold users
      → recommendations (Avro, keyed by user) + latest-recs table → GET /users/{id}/recommendations
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import faust

from connectors.kafka.clients import faust_broker_settings
from connectors.kafka.logbound import RepeatFilter, emit_summaries
from connectors.kafka.logbound import install as install_log_filter
from connectors.privacy.anonymizer import Anonymizer
from schemas import default_codec
from streams.faust_adapter import IntakeApp, consumer_built, read_offsets, table_databases
from streams.intake import BatchIntake
from streams.metrics import WorkerMetrics
from streams.output import TableStore, WorkerOutput
from streams.partitioning import KeyPartitions
from streams.pipeline import BatchProcessor
from streams.popularity import DecayedPopularity
from streams.reader import EventReader
from streams.scoring import ScorerHolder
from streams.views import register_views
from streams.watchdog import EXIT_STALLED, WATCH_INTERVAL_S, Watchdog, exit_now
from streams.worker import BatchWorker, OutputTopics

log = logging.getLogger("streamrec.worker")
# librdkafka's own lines (the events reader's and the output's), through logging and its filter.
CLIENT_LOG = logging.getLogger("streamrec.kafka")


def rocksdb_options() -> dict[str, Any]:
    """Table store options: the rocksdict driver and bounded memory per partition.

    Faust's defaults give each partition's RocksDB a 2 GB block cache and 3 × 64 MB write
    buffers; with many partitions that exceeds a small machine long before state does.
    """
    return {
        "driver": "rocksdict",
        "block_cache_size": 32 * 1024**2,
        "block_cache_compressed_size": 8 * 1024**2,
        "write_buffer_size": 16 * 1024**2,
        "max_write_buffer_number": 2,
        "max_open_files": 256,
    }


@dataclass
class Worker:
    """The app and everything its batch handler uses."""

    app: faust.App
    batches: BatchWorker
    watchdog: Watchdog | None = None

    @property
    def metrics(self) -> WorkerMetrics:
        return self.batches.metrics

    @property
    def scorer(self) -> ScorerHolder:
        return self.batches.scorer


def create_worker(settings: Any, anonymizer: Anonymizer) -> Worker:
    """Build the Faust app of a worker from the settings (see ``streamrec.settings``).

    ``anonymizer`` makes the training samples and hashes searches for scoring (the composition
    root builds it from the settings' secrets: ``streamrec.components.anonymizer_for``).
    """
    app = build_app(settings)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw", "partitions": settings.partitions}
    events = app.topic(settings.events_topic, **raw)
    users, latest = build_tables(app, settings)
    metrics = WorkerMetrics()
    scorer = ScorerHolder(settings.model_dir, settings.scoring_device, metrics,
                          settings.scoring_threads)
    processor = BatchProcessor(
        default_codec(), top_k=settings.top_k, history_len=settings.history_len,
        # Scoring hashes a search exactly as training samples do: scrubbed, then keyed buckets.
        buckets=anonymizer.query_buckets, popularity=DecayedPopularity(),
        anonymize=anonymizer.anonymize if settings.emit_samples else None,
        source=f"worker:{socket.gethostname()}",
        partitions=KeyPartitions(settings.partitions),
        forward_misrouted=settings.misrouted == "forward",
    )
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
    output = WorkerOutput(settings.private_servers, logger=CLIENT_LOG)
    states, latest_store = TableStore(users, output), TableStore(latest, output)
    topics = OutputTopics(settings.events_topic, settings.samples_topic, settings.dlq_topic,
                          settings.misrouted)
    batches = BatchWorker(processor, scorer, output, states, latest_store, metrics, topics,
                          default_codec(), pool)
    worker = Worker(app, batches)
    if consumer_built(app):  # the intake must be in place before Faust builds it
        raise RuntimeError("the Faust consumer was created before the event intake was set")

    def events_reader() -> EventReader:
        # The group's id: a partition whose start Faust does not know is read from the offset
        # the group committed (the reader never joins the group nor commits).
        return EventReader(settings.private_servers, settings.app_id, settings.events_topic,
                           config={"logger": CLIENT_LOG})

    app.intake = BatchIntake(
        settings.events_topic, batches.take, batches.settle, settings.batch_max_records,
        settings.batch_max_ms,
        reader_factory=events_reader if settings.events_reader == "librdkafka" else None,
        min_ms=settings.batch_min_ms)
    app.topics.add(events)  # subscribes the consumer; the intake takes its records
    register_tasks(app, worker, settings, output, pool, users,
                   [settings.recommendations_topic, states.changelog, settings.dlq_topic]
                   + ([settings.samples_topic] if settings.emit_samples else []))
    register_views(app, worker, states, latest_store)
    return worker


def build_app(settings: Any) -> IntakeApp:
    """The Faust app: its broker, its RocksDB tables' directory, its web port."""
    datadir = settings.worker_dir
    datadir.mkdir(parents=True, exist_ok=True)
    return IntakeApp(
        settings.app_id,
        **faust_broker_settings(settings.private_servers),
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        table_standby_replicas=0,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        web_port=settings.web_port,
        canonical_url=f"http://127.0.0.1:{settings.web_port}",
        consumer_auto_offset_reset="earliest",
        # Failover in seconds (see docs): a dead worker is noticed after the session timeout,
        # and a restarted one keeps its identity (static membership), so it takes its
        # partitions back without making the others rebalance.
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(settings.heartbeat_interval_s,
                                      settings.session_timeout_s / 3),
        consumer_group_instance_id=settings.group_instance_id,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=8192,
        producer_linger_ms=10,
        key_serializer="raw",
        value_serializer="raw",  # values are our Avro bytes or compact JSON, never Faust's JSON
        loghandlers=[],
    )


def build_tables(app: faust.App, settings: Any) -> tuple[faust.Table, faust.Table]:
    """The user-state table and the latest-recs table (changelog: the recommendations topic)."""
    # The recommendations topic is the changelog of the latest-recs table: writing the table
    # publishes the record, and a restarted worker restores the table from the topic.
    recs_topic = app.topic(settings.recommendations_topic, key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw",
                           partitions=settings.partitions)
    table_args = {"partitions": settings.partitions, "key_type": str, "value_type": bytes}
    users = app.Table("user-state", options=rocksdb_options(), **table_args)
    latest = app.Table("latest-recs", options=rocksdb_options(), changelog_topic=recs_topic,
                       **table_args)
    for table in (users, latest):
        # Tables default to JSON keys; ours hold raw bytes (user ids, Avro or compact JSON),
        # which is what recovery must read back from the changelog.
        table.key_serializer = table.value_serializer = "raw"
        table.changelog_topic = table.changelog_topic.derive(key_serializer="raw",
                                                             value_serializer="raw")
    return users, latest


def register_tasks(app: faust.App, worker: Worker, settings: Any, output: WorkerOutput,
                   pool: ThreadPoolExecutor, users: faust.Table, written: list[str]) -> None:
    """The worker's start-up task and timers: model following, gauges, the watchdog."""
    repeats = RepeatFilter(on_left_out=lambda name: worker.metrics.log_lines_suppressed.labels(
        name.split(".")[0]).inc())

    @app.task
    async def prepare_worker() -> None:
        _quiet_client_logs(settings.log_level)
        install_log_filter(repeats)
        try:
            await asyncio.get_running_loop().run_in_executor(pool, output.warm, written)
            _calm_garbage_collector()
        finally:
            app.intake.ready.set()  # the intake takes events from now on

    @app.timer(interval=2.0)
    async def follow_model() -> None:
        await asyncio.get_running_loop().run_in_executor(None, worker.scorer.reload_if_changed)

    @app.timer(interval=5.0)
    async def gauges() -> None:
        _update_gauges(app, users, worker.metrics, app.intake.lag())
        emit_summaries(repeats)

    watchdog = Watchdog(settings.private_servers, settings.app_id, settings.events_topic,
                        settings.stall_timeout_s, worker.metrics)
    worker.watchdog = watchdog

    @app.timer(interval=WATCH_INTERVAL_S)
    async def watch() -> None:
        assigned = [tp.partition for tp in app.consumer.assignment()
                    if tp.topic == settings.events_topic]
        verdict = await asyncio.get_running_loop().run_in_executor(
            None, watchdog.check, assigned, app.intake.other_records)
        if verdict is not None:
            log.error("%s: exiting so that the worker is restarted", verdict)
            exit_now(EXIT_STALLED)


def _calm_garbage_collector() -> None:
    """Keep Python's cyclic garbage collector from sweeping the whole heap every few batches.

    A batch allocates tens of thousands of short-lived objects (records, lists, tuples); with
    the default thresholds that sets off full collections over everything Faust, aiokafka and
    ONNX Runtime hold, which cost more than the batch itself. What exists once the worker runs
    is frozen out of collection, and young objects are collected less eagerly. Nothing on the
    hot path builds reference cycles, so this only changes when memory is reclaimed.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _quiet_client_logs(level: str) -> None:
    """Hold the Kafka client and Faust loggers to the worker's level.

    mode's logging set-up leaves the root logger at DEBUG here, and aiokafka's per-request debug
    records then cost more than the events they describe.
    """
    for name in ("", "aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(name).setLevel(level.upper())


def _update_gauges(app: faust.App, users: faust.Table, metrics: WorkerMetrics,
                   read_lag: dict) -> None:
    """``read_lag``: the events reader's lag per partition (aiokafka does not fetch those)."""
    consumer = app.consumer
    read = read_offsets(consumer)
    for tp, lag in read_lag.items():
        metrics.consumer_lag.labels(f"{tp.topic}:{tp.partition}").set(lag)
    for tp in consumer.assignment():
        if tp in read_lag or tp.topic != app.conf.id and tp.topic.endswith("changelog"):
            continue
        high = consumer.highwater(tp)
        if high is not None and read.get(tp) is not None:
            metrics.consumer_lag.labels(f"{tp.topic}:{tp.partition}").set(
                max(0, high - read[tp] - 1))
    estimate = 0
    for db in table_databases(users):
        try:
            estimate += int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
        except Exception:  # noqa: BLE001 - a store being closed during a rebalance
            pass
    metrics.users_in_state.set(estimate)
