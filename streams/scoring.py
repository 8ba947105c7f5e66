"""The worker's handle on the scorer: load at start, follow the configured artifact, hot-swap.

The model directory named in the settings may be a symbolic link that a deploy re-points, or a
directory whose files are replaced: either way a changed target is loaded and warmed off the hot
path, then swapped in atomically by ``model.scorer.Scorer.swap`` (in-flight batches finish on the
old session). A model that fails to load is refused and the old one keeps serving.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streams.metrics import WorkerMetrics
from streams.pipeline import BatchProcessor, Pending, Scoring

log = logging.getLogger("streamrec.worker.model")


def _fingerprint(path: Path) -> tuple[str, float]:
    """What identifies the artifact a path points to: its real path and newest file time."""
    real = path.resolve()
    mtimes = [f.stat().st_mtime for f in real.iterdir() if f.is_file()] if real.is_dir() else []
    return str(real), max(mtimes, default=0.0)


def default_threads() -> int:
    """ONNX Runtime threads of a worker's scorer when the settings leave it to us: every core
    this process may run on but one, which the event loop needs to itself (at least one).

    ONNX Runtime's own default takes every core. On 2 cores its second thread competes with the
    event loop, the worker's bottleneck: draining a 40k-event backlog went from 5,500-5,600 to
    6,100-6,150 events/s with one thread (Beauty model, 12k items), and a call for 8 users
    uses 1.8 ms of CPU time on one thread against 2.4 on two.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


class ScorerHolder:
    """Owns the ``Scorer`` (or none: popularity only) and swaps it when the artifact changes."""

    def __init__(self, model_dir: Path | None, device: str, metrics: WorkerMetrics,
                 threads: int | None = None) -> None:
        self.model_dir = Path(model_dir) if model_dir else None
        self.device = device
        self.threads = threads or default_threads()
        self.metrics = metrics
        self.scorer: Any = None
        self._seen: tuple[str, float] | None = None
        self._lock = threading.Lock()
        if self.model_dir is not None:
            from model.scorer import Scorer  # ONNX Runtime only; no torch in the worker

            self._seen = _fingerprint(self.model_dir)
            self.scorer = Scorer(self.model_dir, device=device, threads=self.threads)
            self._publish()

    def prepare(self, processor: BatchProcessor, pending: Sequence[Pending]) -> Scoring:
        """A batch's scoring with whichever model is current (see ``BatchProcessor.prepare``)."""
        return processor.prepare(pending, self.scorer)

    def reload_if_changed(self) -> None:
        """Swap to the configured artifact if it changed since the last check."""
        if self.model_dir is None or not self.model_dir.exists():
            return
        seen = _fingerprint(self.model_dir)
        if seen != self._seen:
            self._seen = seen
            try:
                self.swap(str(self.model_dir))
            except Exception as exc:  # noqa: BLE001 - keep serving the old model
                log.error("refused new model at %s: %s", self.model_dir, exc)

    def swap(self, path: str | None) -> str:
        """Load, check and warm the artifact at ``path``, then serve it; returns its version."""
        if not path:
            raise ValueError('give the artifact directory as {"path": "..."}')
        with self._lock:
            try:
                if self.scorer is None:
                    from model.scorer import Scorer

                    self.scorer = Scorer(path, device=self.device, threads=self.threads)
                    version = self.scorer.version
                else:
                    version = self.scorer.swap(path)
            except Exception:
                self.metrics.model_swaps.labels("refused").inc()
                raise
            self.metrics.model_swaps.labels("ok").inc()
            self._publish()
            log.info("now serving model %s from %s", version, path)
            return version

    def describe(self) -> dict[str, Any]:
        """Version and provider of the model being served."""
        if self.scorer is None:
            return {"version": "popularity", "provider": None}
        return {"version": self.scorer.version, "provider": self.scorer.provider}

    def _publish(self) -> None:
        self.metrics.model.info({k: str(v) for k, v in self.describe().items()})
