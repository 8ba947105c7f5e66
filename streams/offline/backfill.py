"""Backfill training samples: anonymise a past range of the events topic into the samples topic.

    processor = BatchProcessor(..., anonymize=anonymizer.anonymize)  # as the worker builds it
    report = backfill_samples(bootstrap, rng, "samples.anon", processor, rate=20_000)

The samples go to the *private* samples topic, where the live workers send theirs; the normal
mirror (``streamrec mirror``) checks every one and carries it to the public training topic. The
backfill never writes to the public cluster: the mirror stays the only way across.

Each event goes through the worker's own batch step (``BatchProcessor.apply``: decode, validate,
anonymise with ``seq`` = the event's source offset) against a state store that keeps nothing. So a
backfilled sample exists exactly when a live worker emits one for that event, with the same
fields and the same key (the pseudonym, hence the same partition); events the worker dead-letters
give none.

Idempotent: a sample id is a keyed hash of the event id, so running a backfill again sends the
same samples again. Whoever reads the training topic keeps one sample per ``sample_id`` -- it must
anyway, since a worker that re-processes a batch after a crash sends that batch's samples again;
the trainer's ``model.incremental.SampleBuffer`` does, over its last ``dedup_capacity`` ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from connectors.replay.history import (
    CopyReport,
    OutRecord,
    RangeReader,
    Record,
    ReplayRange,
    TargetWriter,
    copy_range,
)
from streamrec.errors import ConfigError
from streams.pipeline import BatchProcessor, Incoming


class _Forgetful:
    """A state store that keeps nothing: sampling needs no state and must not touch the live one."""

    def get(self, user: str, msg: Incoming) -> bytes | None:
        return None

    def put(self, user: str, value: bytes, msg: Incoming) -> None:
        return None


class LiveSampler:
    """A ``copy_range`` transform: the training sample a worker emits for a record, or None."""

    def __init__(self, processor: BatchProcessor, topic: str) -> None:
        if processor.anonymize is None:
            raise ValueError("the processor must anonymise (build it with anonymize=...)")
        self.processor = processor
        self.topic = topic
        self.invalid = 0  # the worker dead-letters these: no sample
        self.not_sampled = 0  # users outside STREAMREC_SAMPLE_RATE
        self._store = _Forgetful()

    def __call__(self, msg: Record) -> OutRecord | None:
        """Run the worker's batch step on this one record and keep its sample."""
        incoming = Incoming(msg.key(), msg.value(), self.topic, msg.partition(), msg.offset(),
                            msg.timestamp()[1])
        result = self.processor.apply([incoming], self._store)
        if result.dead_letters:
            self.invalid += 1
            return None
        if not result.samples:
            self.not_sampled += 1
            return None
        sample = result.samples[0]
        # Keyed by pseudonym, partitioned by key (murmur2) like the worker's samples.
        return OutRecord(self.processor.codec.write(sample), sample.pseudonym.encode())


@dataclass
class BackfillReport:
    """What a backfill read and sent."""

    copy: CopyReport
    invalid: int
    not_sampled: int

    @property
    def samples(self) -> int:
        """Samples written to the samples topic."""
        return self.copy.written


def backfill_samples(bootstrap: str, rng: ReplayRange, samples_topic: str,
                     processor: BatchProcessor, *, rate: float | None,
                     on_progress: Callable[[int], None] | None = None) -> BackfillReport:
    """Send the samples of every event in ``rng`` to ``samples_topic`` (same cluster)."""
    if samples_topic == rng.topic:
        raise ConfigError(f"the samples topic and the events topic are both {rng.topic!r}: "
                          "set STREAMREC_SAMPLES_TOPIC to a topic of its own")
    sampler = LiveSampler(processor, rng.topic)
    reader = RangeReader(bootstrap, rng)
    try:
        with TargetWriter(bootstrap, samples_topic) as writer:
            report = copy_range(reader, writer, transform=sampler, rate=rate,
                                 on_progress=on_progress)
    finally:
        reader.close()
    return BackfillReport(report, sampler.invalid, sampler.not_sampled)
