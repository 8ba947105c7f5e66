"""The Faust app of streamrec: the only module that creates the app, its topics and its tables.

Data path (one worker, or many in one consumer group, each on its share of the partitions)::

    events (Avro, keyed by user)
      → decode + validate ──bad──▶ events.dlq (raw bytes, topic/partition/offset, reason)
      → user-state table (RocksDB via rocksdict, changelog-backed; idempotent by source offset)
      → micro-batch (N records or T ms; several events of a user coalesce into one request)
      → ONNX Runtime scorer (model/, CUDA when present) or stream popularity for cold users
      → recommendations (Avro, keyed by user) + latest-recs table → GET /users/{id}/recommendations

The batch logic lives in ``streams.pipeline``; this module only wires it to Kafka.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas import default_codec
from schemas.fastpath import RecommendationWriter, SampleWriter
from streamrec.components import anonymizer_for
from streams.intake import BatchIntake, IntakeApp
from streams.logbound import RepeatFilter, emit_summaries
from streams.logbound import install as install_log_filter
from streams.metrics import STAGES, WorkerMetrics
from streams.output import Delivery, TableStore, WorkerOutput
from streams.partitioning import KeyPartitions
from streams.pipeline import BatchProcessor, Incoming
from streams.popularity import DecayedPopularity
from streams.reader import EventReader
from streams.scoring import ScorerHolder
from streams.user_state import UserState
from streams.watchdog import EXIT_STALLED, WATCH_INTERVAL_S, Watchdog, exit_now

log = logging.getLogger("streamrec.worker")
# librdkafka's own lines (the events reader's and the output's), through logging and its filter.
CLIENT_LOG = logging.getLogger("streamrec.kafka")
ROUTE_METADATA_S = 5.0  # how long a user lookup waits for the table's partition metadata


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


class UserStates:
    """``StateStore`` of the pipeline over the user-state table."""

    def __init__(self, store: TableStore) -> None:
        self.store = store

    def get(self, user: str, msg: Incoming) -> bytes | None:
        return self.store.get(user, msg.partition)

    def put(self, user: str, value: bytes, msg: Incoming) -> None:
        self.store.put(user, value, msg.partition)


@dataclass
class Worker:
    """The app and everything its batch handler uses."""

    app: faust.App
    metrics: WorkerMetrics
    scorer: ScorerHolder
    processor: BatchProcessor
    watchdog: Watchdog | None = None


def create_worker(settings: Any) -> Worker:
    """Build the Faust app of a worker from the settings (see ``streamrec.settings``)."""
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw", "partitions": settings.partitions}
    datadir = settings.worker_dir
    datadir.mkdir(parents=True, exist_ok=True)
    app = IntakeApp(
        settings.app_id,
        broker=[f"kafka://{s}" for s in settings.private_servers.split(",")],
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
    events = app.topic(settings.events_topic, **raw)
    # The recommendations topic is the changelog of the latest-recs table: writing the table
    # publishes the record, and a restarted worker restores the table from the topic.
    recs_topic = app.topic(settings.recommendations_topic, **raw)
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

    metrics = WorkerMetrics()
    scorer = ScorerHolder(settings.model_dir, settings.scoring_device, metrics,
                          settings.scoring_threads)
    anonymizer = anonymizer_for(settings)
    processor = BatchProcessor(
        default_codec(), top_k=settings.top_k, history_len=settings.history_len,
        # Scoring hashes a search exactly as training samples do: scrubbed, then keyed buckets.
        buckets=anonymizer.query_buckets, popularity=DecayedPopularity(),
        anonymize=anonymizer.anonymize if settings.emit_samples else None,
        source=f"worker:{socket.gethostname()}",
        partitions=KeyPartitions(settings.partitions),
        forward_misrouted=settings.misrouted == "forward",
    )
    worker = Worker(app, metrics, scorer, processor)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
    output = WorkerOutput(settings.private_servers, logger=CLIENT_LOG)
    store = UserStates(TableStore(users, output))
    latest_store = TableStore(latest, output)
    codec = default_codec()
    encode_fields = RecommendationWriter(codec).encode_fields  # the codec's bytes, 3x faster
    encode_sample = SampleWriter(codec).encode  # the same for training samples
    stage = SimpleNamespace(**{name: metrics.batch_stage.labels(name) for name in STAGES})

    def dead_letter_out(dead: dict) -> None:
        """Produce one dead letter (inside a batch's ``counting`` block)."""
        metrics.events_dead_lettered.labels(dead["stage"]).inc()
        log.warning("dead-lettered %s[%s]@%s at %s: %s", dead["topic"], dead["partition"],
                    dead["offset"], dead["stage"], dead["reason"][:200])
        # Always fits one message (connectors.kafka.dead_letters cuts key and value to fit).
        output.produce(settings.dlq_topic, dead["key"], codec.encode("dead_letter", dead))

    def process(incoming: list[Incoming]) -> Coroutine[Any, Any, None]:
        """One micro-batch of events, in partition order (called by the intake).

        Decoding, state updates, dead letters, training samples and the scorer's input happen
        now; scoring and the recommendations happen in the returned coroutine, which the intake
        runs after the previous batch's (see ``streams.intake``).
        """
        began = time.perf_counter()
        stage.gather.observe(max(0.0, time.time() - min(m.timestamp for m in incoming) / 1000))
        metrics.events_in.inc(len(incoming))
        metrics.batch_size.observe(len(incoming))
        with output.counting(Delivery(output)) as delivery:
            result = processor.apply(incoming, store)
            store.store.write_staged()
            metrics.events_applied.inc(result.applied)
            metrics.events_duplicate.inc(result.duplicates)
            for sample, msg in zip(result.samples, result.sampled, strict=True):
                try:
                    output.produce(settings.samples_topic, sample["pseudonym"].encode(),
                                   encode_sample(sample))
                except BufferError:
                    raise
                except Exception as exc:  # noqa: BLE001 - that record goes to the DLQ
                    result.dead_letters.append(processor.dead(
                        msg, "write", f"training sample not written: {exc}", exc))
            for dead in result.dead_letters:
                dead_letter_out(dead)
            for msg, right in result.forwards:  # settled with the batch, before its commit
                output.produce(settings.events_topic, msg.key, msg.value or b"", right)
            if result.misrouted:
                metrics.events_misrouted.labels(settings.misrouted).inc(result.misrouted)
        metrics.samples.inc(len(result.samples))
        pending = list(result.pending.values())
        scoring = scorer.prepare(processor, pending) if pending else None
        prepared = time.perf_counter()
        stage.prepare.observe(prepared - began)
        return recommend(pending, scoring, prepared, delivery)

    async def recommend(pending: list, scoring: Any, prepared: float,
                        delivery: Delivery) -> Delivery:
        """Score a batch (ONNX Runtime in the pool thread) and write its recommendations."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        stage.queue.observe(started - prepared)
        if scoring is not None:
            # Only ONNX Runtime runs in the pool (it releases the GIL): the event loop's thread
            # is the worker's bottleneck, and takes the next batch meanwhile. A small call (a
            # millisecond or two) runs here instead: handed to the pool, its result would also
            # wait for whatever the loop started meanwhile, typically the next batch's first
            # stage. At 1,000 events/s that cut the p99 latency from 61-91 ms to 49-62 ms over
            # three interleaved pairs of runs.
            if scoring.job is not None:
                if scoring.job.small:
                    scoring.job.run()
                else:
                    await loop.run_in_executor(pool, scoring.job.run)
            scored = processor.finish(scoring)
            scored_at = time.perf_counter()
            metrics.scoring_seconds.observe(scored_at - started)
            stage.score.observe(scored_at - started)
            now_ms = int(time.time() * 1000)
            with output.counting(delivery):
                for p, items, version, strategy in scored:
                    try:
                        value = encode_fields(p.user, items, version, strategy,
                                              p.cause["event_id"], p.cause["timestamp"],
                                              p.msg.timestamp, now_ms)
                        latest_store.put(p.user, value, p.msg.partition)
                    except BufferError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - that record goes to the DLQ
                        dead_letter_out(processor.dead(
                            p.msg, "write", f"recommendation not written: {exc}", exc))
            latest_store.write_staged()
            for strategy, count in Counter(s.strategy for s in scored).items():
                metrics.recommendations.labels(strategy).inc(count)
            done_ms = time.time() * 1000
            for p in pending:
                metrics.latency_seconds.observe(max(0.0, done_ms - p.msg.timestamp) / 1000)
            stage.write.observe(time.perf_counter() - scored_at)
        return delivery

    async def settle(delivery: Delivery) -> None:
        """Wait for the broker to acknowledge what a batch wrote (the intake acks it after)."""
        started = time.perf_counter()
        await output.settle(delivery)
        output.persist_offsets()
        stage.settle.observe(time.perf_counter() - started)

    repeats = RepeatFilter(on_left_out=lambda name: metrics.log_lines_suppressed.labels(
        name.split(".")[0]).inc())

    @app.task
    async def prepare_worker() -> None:
        _quiet_client_logs(settings.log_level)
        install_log_filter(repeats)
        written = [settings.recommendations_topic, store.store.changelog, settings.dlq_topic]
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(pool, output.warm, written + (
                [settings.samples_topic] if settings.emit_samples else []))
            _calm_garbage_collector()
        finally:
            app.intake.ready.set()  # the intake takes events from now on

    if app._consumer is not None:  # the intake must be in place before Faust builds it
        raise RuntimeError("the Faust consumer was created before the event intake was set")
    def events_reader() -> EventReader:
        # The group's id: a partition whose start Faust does not know is read from the offset
        # the group committed (the reader never joins the group nor commits).
        return EventReader(settings.private_servers, settings.app_id, settings.events_topic,
                           config={"logger": CLIENT_LOG})

    app.intake = BatchIntake(
        settings.events_topic, process, settle, settings.batch_max_records, settings.batch_max_ms,
        reader_factory=events_reader if settings.events_reader == "librdkafka" else None,
        min_ms=settings.batch_min_ms)
    app.topics.add(events)  # subscribes the consumer; the intake takes its records

    @app.timer(interval=2.0)
    async def follow_model() -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, scorer.reload_if_changed)

    @app.timer(interval=5.0)
    async def gauges() -> None:
        _update_gauges(app, users, metrics, app.intake.lag())
        emit_summaries(repeats)

    watchdog = Watchdog(settings.private_servers, settings.app_id, settings.events_topic,
                        settings.stall_timeout_s, metrics)
    worker.watchdog = watchdog

    @app.timer(interval=WATCH_INTERVAL_S)
    async def watch() -> None:
        assigned = [tp.partition for tp in app.consumer.assignment()
                    if tp.topic == settings.events_topic]
        loop = asyncio.get_running_loop()
        verdict = await loop.run_in_executor(None, watchdog.check, assigned,
                                             app.intake.other_records)
        if verdict is not None:
            log.error("%s: exiting so that the worker is restarted", verdict)
            exit_now(EXIT_STALLED)

    _register_views(app, worker, store.store, latest_store)
    return worker


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
    read = getattr(consumer, "_read_offset", {})  # private in Faust 0.15; no public accessor
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
    for db in getattr(users.data, "_dbs", {}).values():
        try:
            estimate += int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
        except Exception:  # noqa: BLE001 - a store being closed during a rebalance
            pass
    metrics.users_in_state.set(estimate)


def _routable(app: faust.App, table: faust.Table) -> Callable[[Any], Any]:
    """Make sure Faust's router can find the partition of a key before it routes a request.

    Faust routes a table request by the partition its aiokafka producer computes from that
    producer's metadata; the worker produces through librdkafka, so after a rebalance that
    metadata may hold no entry for the table's changelog and routing failed with a 500
    (``'NoneType' object is not iterable``). Asking for the topic's partitions fills it in.
    """
    topic = table.changelog_topic.get_topic_name()

    def decorate(fun: Any) -> Any:
        @functools.wraps(fun)
        async def handler(view: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            producer = app.producer._ensure_producer()  # aiokafka's; private in Faust 0.15
            try:
                await asyncio.wait_for(producer.partitions_for(topic), ROUTE_METADATA_S)
            except Exception as exc:  # noqa: BLE001 - the cluster is unreachable or slow
                return view.json({"error": f"cannot route the request yet: the partitions of "
                                           f"{topic} are unknown ({exc or type(exc).__name__})"},
                                 status=503)
            return await fun(view, request, *args, **kwargs)

        return handler

    return decorate


def _register_views(app: faust.App, worker: Worker, users: TableStore,
                    latest: TableStore) -> None:
    codec = default_codec()

    @app.page("/users/{user_id}/recommendations")
    @_routable(app, latest.table)
    @app.table_route(table=latest.table, match_info="user_id")
    async def recommendations(web: Any, request: Any, user_id: str) -> Any:
        value = latest.find(user_id)
        if value is None:
            return web.json({"error": f"no recommendation for user {user_id!r} yet"},
                            status=404)
        return web.json(codec.decode("recommendation", value))

    @app.page("/users/{user_id}/state")
    @_routable(app, users.table)
    @app.table_route(table=users.table, match_info="user_id")
    async def state(web: Any, request: Any, user_id: str) -> Any:
        value = users.find(user_id)
        if value is None:
            return web.json({"error": f"no state for user {user_id!r}"}, status=404)
        return web.json(UserState.from_bytes(value).__dict__)

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """Liveness: 200 while the worker makes progress, 503 once the watchdog saw a stall."""
        report = worker.watchdog.report() if worker.watchdog else {"status": "ok"}
        return web.json(report, status=200 if report["status"] == "ok" else 503)

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(worker.metrics.registry),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/model")
    class ModelView(faust.web.View):
        """GET: the model being served. POST {"path": DIR}: hot-swap to that artifact."""

        async def get(self, request: Any) -> Any:
            return self.json(worker.scorer.describe())

        async def post(self, request: Any) -> Any:
            body = json.loads(await request.text() or "{}")
            loop = asyncio.get_running_loop()
            try:
                version = await loop.run_in_executor(None, worker.scorer.swap, body.get("path"))
            except Exception as exc:  # noqa: BLE001 - reported to the operator, old model kept
                return self.json({"error": str(exc)}, status=400)
            return self.json({"version": version})
