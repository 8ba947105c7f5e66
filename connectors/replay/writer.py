"""The producing side of a replay: idempotent, or transactional for exactly-once resumes.

A transactional writer commits the source positions it has copied up to *in the same transaction*
as the copied records (``send_offsets_to_transaction`` under a consumer group named after the
replay). A crash therefore leaves either both the records and the positions, or neither: on
restart ``init_transactions`` aborts the dead run's open transaction (read_committed readers never
see its records) and ``committed_positions`` says exactly where to go on.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from connectors.kafka.clients import consumer_config, producer_config
from connectors.kafka.retry import Retry, call
from streamrec.errors import StreamrecError

log = logging.getLogger("streamrec.replay")
TXN_TIMEOUT_MS = 60_000
# The client allows calling commit again after a retriable error; each call waits up to 30 s.
_COMMIT_RETRY = Retry(first_wait_s=0.0, attempts=3)


class ReplayError(StreamrecError):
    """A replay that could not go on; the message says what happened and what to do."""


def replay_ids(name: str) -> str:
    """The transactional id and consumer group of the resumable replay ``name``."""
    return f"streamrec-replay-{name}"


def committed_positions(bootstrap: str, group_id: str, topic: str,
                        partitions: list[int], timeout_s: float = 30.0) -> dict[int, int]:
    """Source positions committed by a replay's transactions (partitions without one omitted)."""
    consumer = Consumer(consumer_config(bootstrap, group_id))
    try:
        asked = [TopicPartition(topic, p) for p in partitions]
        answer = consumer.committed(asked, timeout=timeout_s)
    except KafkaException as exc:
        raise ReplayError(f"cannot read the committed positions of group {group_id!r}: "
                          f"{exc.args[0].str()}") from None
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in answer if tp.offset >= 0}


class TargetWriter:
    """Writes records to one topic in batches; transactional when given a transactional id."""

    def __init__(self, bootstrap: str, topic: str, *, transactional_id: str | None = None,
                 flush_timeout_s: float = 60.0, **config: Any) -> None:
        self.topic = topic
        self.transactional = transactional_id is not None
        self.flush_timeout_s = flush_timeout_s
        self.failed = 0
        self.errors: list[str] = []
        overrides: dict[str, Any] = {
            "linger.ms": 20,  # throughput over latency: a replay is a bulk copy
            "batch.size": 1_000_000,
            "delivery.report.only.error": True,  # no Python callback per delivered record
            "on_delivery": self._on_failure,
            **config,
        }
        if transactional_id is not None:
            overrides.update({"transactional.id": transactional_id,
                              "transaction.timeout.ms": TXN_TIMEOUT_MS})
        self._producer = Producer(producer_config(bootstrap, **overrides))
        self._produce = self._producer.produce
        if self.transactional:
            self._start_transactions(bootstrap, transactional_id or "")

    def _start_transactions(self, bootstrap: str, transactional_id: str) -> None:
        try:
            # Fences any earlier producer with this id and aborts its open transaction.
            self._producer.init_transactions(30)
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise ReplayError(
                f"cannot start transactions as {transactional_id!r} on {bootstrap}: "
                f"{exc.args[0].str()}. The cluster must allow transactions "
                "(transaction.state.log.replication.factor ≤ number of brokers); or replay "
                "without --resume") from None

    def _on_failure(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(err.str())

    def write(self, value: bytes | None, key: bytes | None, partition: int,
              headers: list[tuple[str, bytes]]) -> None:
        """Queue one record (``partition=-1``: by key); waits when the local queue is full."""
        while True:
            try:
                # The stubs want a list of wider tuples (invariant); bytes values are accepted.
                self._produce(self.topic, value, key, partition,
                              headers=headers)  # type: ignore[arg-type]
                return
            except BufferError:
                self._producer.poll(0.05)  # serve delivery reports so the queue drains
            except KafkaException as exc:
                raise self._stopped(exc.args[0]) from None

    def poll(self) -> None:
        """Serve delivery reports; call once per batch, not per record."""
        self._producer.poll(0)

    def commit(self, source_topic: str, positions: dict[int, int], group_metadata: object,
               *, more: bool = True) -> None:
        """Make every record written so far durable, with ``positions`` if transactional."""
        if not self.transactional:
            remaining = self._producer.flush(self.flush_timeout_s)
            if remaining or self.failed:
                raise ReplayError(
                    f"{self.failed} record(s) failed and {remaining} are still queued after "
                    f"{self.flush_timeout_s:.0f} s: {'; '.join(self.errors)}. Is the cluster "
                    "reachable? The copy stopped part-way; run it again with --resume to get "
                    "a copy that can be continued without duplicates")
            return
        offsets = [TopicPartition(source_topic, p, pos) for p, pos in sorted(positions.items())]
        try:
            self._producer.send_offsets_to_transaction(offsets, group_metadata, 30)
            self._commit_transaction()
            if more:
                self._producer.begin_transaction()
        except KafkaException as exc:
            raise self._stopped(exc.args[0]) from None

    def _commit_transaction(self) -> None:
        call(lambda: self._producer.commit_transaction(30), "commit the replay transaction",
             _COMMIT_RETRY, logger=log)

    def _stopped(self, err: KafkaError) -> ReplayError:
        """The error to raise for a failed produce or commit, aborting what can be aborted."""
        if err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                          KafkaError.INVALID_PRODUCER_EPOCH):
            return ReplayError("another replay with the same --resume name took over (this "
                               "one was fenced); run only one at a time")
        if self.transactional and err.txn_requires_abort():
            self._producer.abort_transaction(30)
        return ReplayError(f"writing to {self.topic!r} failed: {err.str()}. Records of the "
                           "unfinished transaction were discarded; resume with the same name "
                           "to go on from the last committed batch")

    def abort(self) -> None:
        """Give up the current batch (interrupted): abort it, or flush what was queued."""
        if not self.transactional:
            self._producer.flush(10)
            return
        try:
            self._producer.abort_transaction(10)
        except KafkaException:
            # The broker aborts it anyway once transaction.timeout.ms passes, or when the
            # replay is resumed; the original interruption is what the user needs to see.
            pass

    def __enter__(self) -> TargetWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()
