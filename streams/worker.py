"""The worker's data path: one micro-batch of events, stage by stage, top to bottom.

A click's way from a shop to its recommendation::

    streamrec produce / any Kafka client (connectors.sdk.producer: Avro, keyed by user id)
      → events topic, partition murmur2(user id)
      → BatchIntake (streams.intake): the records of a batch, in partition order
      → BatchWorker.take (this module), the stages of the batch:
          decode   Avro → event, or a dead letter with the reason (streams.pipeline)
          apply    the user's state in the user-state table (RocksDB, changelog-backed),
                   idempotent by source offset; anonymised training samples (connectors.privacy)
          score    ONNX Runtime over the users of the batch (model.scorer, via streams.scoring),
                   stream popularity for users the model cannot score
          write    recommendations (Avro) to the latest-recs table, whose changelog is the
                   recommendations topic that subscribers read (connectors.sdk.subscriber)
          settle   wait until the broker acknowledged everything the batch wrote; only then
                   the intake acknowledges the batch's offsets, so Faust may commit them

What Faust does and what streamrec does instead, and why: Faust keeps group membership, partition
assignment, table recovery from changelogs, flow control during rebalances, offset commits and
the HTTP server. Its per-record path (a message, two tasks, the conductor, a queue and an ack
per record) is measured to take a backlog more slowly with an agent that does nothing than this
worker takes it doing everything (``benchmarks/faust_ceiling.py`` against the worker: "Faust
alone" in ``benchmarks/README.md``), and its producer costs more per record than the work
itself (``streams/output.py`` says why). So the
events are read a batch at a time (``streams.intake``, by librdkafka in ``streams.reader``),
tables are written straight to their RocksDB stores and every record is produced with
librdkafka (``streams.output``). Every Faust internal that needs is in ``streams.faust_adapter``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from schemas import Codec
from schemas.fastpath import RecommendationWriter, SampleWriter
from schemas.records import DeadLetter
from streams.metrics import STAGES, WorkerMetrics
from streams.output import Delivery, TableStore, WorkerOutput
from streams.pipeline import BatchProcessor, BatchResult, Incoming, Pending, Scored, Scoring
from streams.scoring import ScorerHolder

log = logging.getLogger("streamrec.worker")


class UserStates:
    """``StateStore`` of the pipeline over the user-state table."""

    def __init__(self, store: TableStore) -> None:
        self.store = store

    def get(self, user: str, msg: Incoming) -> bytes | None:
        return self.store.get(user, msg.partition)

    def put(self, user: str, value: bytes, msg: Incoming) -> None:
        self.store.put(user, value, msg.partition)


@dataclass(frozen=True)
class OutputTopics:
    """Where a worker writes besides its tables."""

    events: str  # misrouted events are forwarded to their right partition here
    samples: str
    dead_letters: str
    misrouted: str  # what is done with a misrouted event: "dead-letter" or "forward"


class BatchWorker:
    """The stages of a batch (module docstring); the intake calls ``take`` and ``settle``."""

    def __init__(self, processor: BatchProcessor, scorer: ScorerHolder, output: WorkerOutput,
                 states: TableStore, latest: TableStore, metrics: WorkerMetrics,
                 topics: OutputTopics, codec: Codec, pool: Executor) -> None:
        self.processor = processor
        self.scorer = scorer
        self.output = output
        self.states = UserStates(states)
        self.latest = latest
        self.metrics = metrics
        self.topics = topics
        self.codec = codec
        self.pool = pool  # ONNX Runtime's thread (it releases the GIL)
        self.encode_recommendation = RecommendationWriter(codec).write  # 3x codec.write
        self.encode_sample = SampleWriter(codec).write  # the same bytes as codec.write
        self.stage = SimpleNamespace(**{n: metrics.batch_stage.labels(n) for n in STAGES})

    def take(self, incoming: list[Incoming]) -> Coroutine[Any, Any, Delivery]:
        """Decode and apply a batch now; return the coroutine that scores and writes it.

        The intake runs the coroutine after the previous batch's, so the event loop takes and
        applies batch k+1 while batch k is being scored (see ``streams.intake``).
        """
        began = time.perf_counter()
        self.stage.gather.observe(max(0.0, time.time() - min(m.timestamp for m in incoming)
                                      / 1000))
        self.metrics.events_in.inc(len(incoming))
        self.metrics.batch_size.observe(len(incoming))
        with self.output.counting(Delivery(self.output)) as delivery:
            result = BatchResult()
            decoded = self.processor.decode(incoming, result)
            self.apply(decoded, result, incoming)
        pending = list(result.pending.values())
        scoring = self.scorer.prepare(self.processor, pending) if pending else None
        prepared = time.perf_counter()
        self.stage.prepare.observe(prepared - began)
        return self.score_and_write(pending, scoring, prepared, delivery)

    def apply(self, decoded: list, result: BatchResult, incoming: list[Incoming]) -> None:
        """Apply the decoded events to user state, then write what that produced besides
        recommendations: the state's changelog, training samples, dead letters, forwards."""
        self.processor.apply_decoded(decoded, self.states, result, incoming)
        self.states.store.write_staged()
        self.metrics.events_applied.inc(result.applied)
        self.metrics.events_duplicate.inc(result.duplicates)
        for sample, msg in zip(result.samples, result.sampled, strict=True):
            try:
                self.output.produce(self.topics.samples, sample.pseudonym.encode(),
                                    self.encode_sample(sample))
            except BufferError:
                raise
            except Exception as exc:  # noqa: BLE001 - that record goes to the DLQ
                result.dead_letters.append(self.processor.dead(
                    msg, "write", f"training sample not written: {exc}", exc))
        for dead in result.dead_letters:
            self.dead_letter(dead)
        for msg, right in result.forwards:  # settled with the batch, before its commit
            self.output.produce(self.topics.events, msg.key, msg.value or b"", right)
        if result.misrouted:
            self.metrics.events_misrouted.labels(self.topics.misrouted).inc(result.misrouted)
        self.metrics.samples.inc(len(result.samples))

    async def score_and_write(self, pending: list[Pending], scoring: Scoring | None,
                              prepared: float, delivery: Delivery) -> Delivery:
        """The rest of ``take``: score the batch's users, then write their recommendations."""
        started = time.perf_counter()
        self.stage.queue.observe(started - prepared)
        if scoring is not None:
            scored = await self.score(scoring)
            scored_at = time.perf_counter()
            self.metrics.scoring_seconds.observe(scored_at - started)
            self.stage.score.observe(scored_at - started)
            self.write(scored, delivery)
            done_ms = time.time() * 1000
            for p in pending:
                self.metrics.latency_seconds.observe(max(0.0, done_ms - p.msg.timestamp) / 1000)
            self.stage.write.observe(time.perf_counter() - scored_at)
        return delivery

    async def score(self, scoring: Scoring) -> list[Scored]:
        """ONNX Runtime in the pool thread for a large job, on this thread for a small one.

        Only ONNX Runtime runs in the pool: the event loop's thread is the worker's bottleneck
        and takes the next batch meanwhile. A small call (a millisecond or two) runs here:
        handed to the pool, its result would also wait for whatever the loop started meanwhile,
        typically the next batch's first stage. At 1,000 events/s that cut the p99 latency
        from 61-91 ms to 49-62 ms over three interleaved pairs of runs.
        """
        job = scoring.job
        if job is not None:
            if job.small:
                job.run()
            else:
                await asyncio.get_running_loop().run_in_executor(self.pool, job.run)
        return self.processor.finish(scoring)

    def write(self, scored: list[Scored], delivery: Delivery) -> None:
        """Each user's recommendation into the latest-recs table (and so its changelog, the
        recommendations topic); one the producer refuses is dead-lettered."""
        now_ms = int(time.time() * 1000)
        with self.output.counting(delivery):
            for result in scored:
                p = result.pending
                try:
                    value = self.encode_recommendation(self.processor.record(result, now_ms))
                    self.latest.put(p.user, value, p.msg.partition)
                except BufferError:
                    raise
                except Exception as exc:  # noqa: BLE001 - that record goes to the DLQ
                    self.dead_letter(self.processor.dead(
                        p.msg, "write", f"recommendation not written: {exc}", exc))
        self.latest.write_staged()
        for strategy, count in Counter(s.strategy for s in scored).items():
            self.metrics.recommendations.labels(strategy).inc(count)

    async def settle(self, delivery: Delivery) -> None:
        """Wait for the broker to acknowledge what a batch wrote (the intake acks it after)."""
        started = time.perf_counter()
        await self.output.settle(delivery)
        self.output.persist_offsets()
        self.stage.settle.observe(time.perf_counter() - started)

    def dead_letter(self, dead: DeadLetter) -> None:
        """Produce one dead letter (inside a batch's ``counting`` block)."""
        self.metrics.events_dead_lettered.labels(dead.stage).inc()
        log.warning("dead-lettered %s[%s]@%s at %s: %s", dead.topic, dead.partition,
                    dead.offset, dead.stage, dead.reason[:200])
        # Always fits one message (connectors.kafka.dead_letters cuts key and value to fit).
        self.output.produce(self.topics.dead_letters, dead.key, self.codec.write(dead))
