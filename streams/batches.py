"""Batches in flight: each batch's stages run in order, overlapping with the next batch's.

Three stages per batch, each in batch order: the handler's first stage (on the event loop, as
soon as the batch is closed); the rest the handler returns (scoring in a pool thread, then
output), after the previous batch's rest; and settling (the broker acknowledges what the batch
wrote), after which the batch's offsets are acknowledged to Faust. ``streams.intake`` closes
the batches; ``streams.worker.BatchWorker`` is the handler.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from faust.types import TP

from streams import faust_adapter as fa
from streams.pipeline import Incoming

# Called with each batch: does the batch's first stage synchronously and returns the rest.
Handler = Callable[[list[Incoming]], Awaitable[Any]]
# Called with what a batch's rest returned: waits until everything the batch wrote is stored.
Settle = Callable[[Any], Awaitable[None]]


class _InFlight:
    """Stands for a batch being processed in the consumer's set of unacknowledged messages.

    Faust waits for that set to empty before it closes the tables of revoked partitions and
    before it stops; with this token in it, it waits for the batch as it would for an event.
    """

    refcount = 1

    def __init__(self, size: int) -> None:
        self.acked = False
        self.size = size

    def __repr__(self) -> str:
        return f"<batch of {self.size} events in flight>"


class BatchesInFlight:
    """Runs batches through their stages, at most ``depth`` in flight (module docstring)."""

    def __init__(self, handler: Handler, settle: Settle, max_records: int, max_ms: float,
                 depth: int = 3, min_ms: float = 0.0) -> None:
        self.handler = handler
        self.settle = settle
        self.depth = depth
        self.max_records = max_records
        self.max_s = max_ms / 1000.0
        self.min_s = min(min_ms, max_ms) / 1000.0
        self._rested: asyncio.Future | None = None  # the newest batch's rest
        self._done: asyncio.Future | None = None  # the newest batch's settle and ack
        self._in_flight: deque[asyncio.Future] = deque()
        # Set once the worker may produce (its output is warm): no batch is processed before.
        self.ready = asyncio.Event()

    async def _close_batches(self, consumer: Any, pending: list[Incoming], opened: float,
                             when_free: bool) -> tuple[list[Incoming], float]:
        """Process full batches, then the rest if its window has passed (or, ``when_free``, if
        no batch is being scored and it is at least ``min_ms`` old); returns what stays pending
        and when it was opened."""
        while len(pending) >= self.max_records:
            batch, pending = pending[:self.max_records], pending[self.max_records:]
            await self._process(consumer, batch)
            opened = time.monotonic()
        waited = time.monotonic() - opened
        if pending and (when_free and self._scorer_free() and waited >= self.min_s
                        or waited >= self.max_s):
            await self._process(consumer, pending)
            pending = []
        return pending, opened

    def _scorer_free(self) -> bool:
        """True when no batch is being scored or written (its rest is done)."""
        return self._rested is None or self._rested.done()

    async def _process(self, consumer: Any, batch: list[Incoming]) -> None:
        """Run the handler's first stage now; its rest and its settling follow in the background.

        Three stages, each in batch order: the first stage (on the event loop, now); the rest
        the handler returns (scoring in a pool thread, then output), after the previous batch's
        rest; and settling (the broker acknowledges what the batch wrote), after which the batch
        is acknowledged. So the event loop takes and prepares batch k+1 while batch k is scored
        and settled. At most ``depth`` batches are in flight; beyond that the intake waits.
        """
        if not self.ready.is_set():
            # Only events wait: changelog records (table recovery) keep flowing meanwhile.
            await self.ready.wait()
        token = _InFlight(len(batch))
        fa.hold(consumer, token)
        try:
            rest = self.handler(batch)
        except BaseException:
            self._release(consumer, token)
            raise
        rested = asyncio.ensure_future(self._rest(self._rested, rest))
        done = asyncio.ensure_future(self._complete(consumer, batch, token, rested, self._done))
        self._rested, self._done = rested, done
        self._in_flight.append(done)
        while len(self._in_flight) > self.depth:
            await self._in_flight.popleft()
        if fa.commit_due(consumer):
            await consumer.commit()

    @staticmethod
    async def _rest(previous: asyncio.Future | None, rest: Awaitable[Any]) -> Any:
        try:
            if previous is not None:
                await previous
        except BaseException:
            if inspect.iscoroutine(rest):
                rest.close()  # an earlier batch failed: this one is read again after a restart
            raise
        return await rest

    async def _complete(self, consumer: Any, batch: list[Incoming], token: _InFlight,
                        rested: asyncio.Future, previous: asyncio.Future | None) -> None:
        try:
            outcome = await rested
            if previous is not None:
                await previous
            # Nothing of the batch may be lost once its offsets can be committed.
            await self.settle(outcome)
            self._ack(consumer, batch)
        finally:
            self._release(consumer, token)

    def _raise_if_failed(self) -> None:
        for future in (self._done, *self._in_flight):
            if future is not None and future.done() and not future.cancelled():
                error = future.exception()
                if error is not None:
                    raise error

    @staticmethod
    def _release(consumer: Any, token: _InFlight) -> None:
        token.acked = True
        fa.release(consumer, token)

    @staticmethod
    def _ack(consumer: Any, batch: list[Incoming]) -> None:
        """Acknowledge a processed batch, as ``Consumer.ack`` does record by record."""
        by_tp: dict[TP, list[int]] = {}
        for msg in batch:
            by_tp.setdefault(TP(msg.topic, msg.partition), []).append(msg.offset)
        fa.acknowledge(consumer, by_tp)
