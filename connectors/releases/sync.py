"""Model sync (private side): follow the releases, check each one, then re-point ``current``.

    releases (public cluster, read only) ──▶ signature ──▶ fetch ──▶ hashes ──▶ canary ──▶ current
                                              └─────────────── any check fails ──▶ refused (reason)

A release is run only when it is signed by the trainer's key (``verify_key``), when the fetched
artifact verifies (``model.artifact.load_artifact``: the sha256 of every file and of the metadata)
and is the one the release names (its ``metadata_sha256`` equals the signed ``sha256``), and when a
canary batch on ONNX Runtime gives sane recommendations. Then the ``current`` link is re-pointed
and the workers, which follow it, hot-swap within seconds. Refusals are logged and recorded.
Releases already accepted or refused are skipped, so the sync reads the (compacted) topic from
the beginning on every start and needs no stored position. No torch here (ONNX Runtime only).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from connectors.kafka.errors import kafka_errors
from connectors.releases.records import (
    MODEL_NAME,
    Release,
    ReleaseReader,
    check_signature,
    topic_exists,
)
from connectors.releases.registry import PrivateModels
from connectors.releases.signing import SigningError
from connectors.releases.store import S3Options, StoreError, StoreUnavailable, fetch_artifact
from model.artifact import load_artifact
from model.errors import ModelError
from model.scorer import Scorer
from streamrec.errors import ReleaseRefused, StreamrecError

log = logging.getLogger("streamrec.models")


class CanaryError(ReleaseRefused):
    """A model that loads but gives recommendations no worker should serve."""


@dataclass(frozen=True)
class SyncConfig:
    """Where releases come from, where models go, and the key that proves their origin."""

    public_bootstrap: str
    releases_topic: str
    models_dir: Path
    verify_key: Path
    model_name: str = MODEL_NAME
    device: str = "auto"
    canary_users: int = 16
    timeout_s: float = 30.0
    s3: S3Options = S3Options()  # endpoint and region of s3:// artifact URIs (this side's own)


@dataclass
class SyncStats:
    """What one sync run did."""

    accepted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    current: str | None = None


def canary(path: Path, device: str = "auto", users: int = 16) -> dict[str, Any]:
    """Score a batch of histories with the artifact on ONNX Runtime; CanaryError if insane.

    Checks: one list per user, of the expected length, items from the catalogue only, none of
    the user's own items, finite scores best first, and a full score row per user.
    """
    started = time.monotonic()
    scorer = Scorer(path, device=device)  # type: ignore[arg-type]
    catalogue = scorer.artifact.item_ids[1:]
    rng = np.random.default_rng(0)
    sizes = np.linspace(1, scorer.max_len, users - 1, dtype=int)
    histories: list[list[str]] = [[]] + [
        [str(i) for i in rng.choice(catalogue, size=min(n, len(catalogue) - 1), replace=False)]
        for n in sizes]
    k = min(10, scorer.k)
    recs = scorer.top_k(histories, k)
    if len(recs) != len(histories):
        raise CanaryError(f"{len(histories)} users scored, {len(recs)} answers")
    known = set(catalogue)
    for history, rec in zip(histories, recs, strict=True):
        ids = [item for item, _ in rec]
        scores = np.asarray([score for _, score in rec], dtype=np.float64)
        expected = min(k, len(catalogue) - len(set(history)))
        if len(ids) != expected or len(set(ids)) != len(ids):
            raise CanaryError(f"history of {len(history)} items: {len(ids)} distinct "
                              f"recommendations, expected {expected}")
        if not set(ids) <= known or set(ids) & set(history):
            raise CanaryError("recommended an unknown item or one of the user's own items")
        if not np.isfinite(scores).all() or (np.diff(scores) > 0).any():
            raise CanaryError(f"scores not finite or not best first: {scores[:5].tolist()}")
    width = max(1, max(len(h) for h in histories))
    seq = np.ones((len(histories), min(width, scorer.max_len)), np.int64)
    (raw,) = scorer.run_raw(seq, np.zeros((len(histories), 1), np.int64), seq, ["scores"])
    if raw.shape != (len(histories), len(catalogue) + 1) or np.isnan(raw).any():
        raise CanaryError(f"score matrix of shape {raw.shape} (expected "
                          f"{(len(histories), len(catalogue) + 1)}) or holding NaN")
    return {"users": len(histories), "k": k, "provider": scorer.provider,
            "seconds": round(time.monotonic() - started, 3)}


@contextmanager
def _current_unchanged() -> Iterator[None]:
    """Say, on an error of a promotion or rollback, that ``current`` still points where it did."""
    try:
        yield
    except StreamrecError as exc:
        exc.add_note("current is unchanged")
        raise


class ModelSync:
    """Accepts or refuses releases and keeps ``current`` on the newest accepted one."""

    def __init__(self, config: SyncConfig) -> None:
        self.config = config
        self.models = PrivateModels(config.models_dir)
        self._stop = threading.Event()

    def stop(self) -> None:
        """End ``run`` after the current poll (safe from another thread or a signal handler)."""
        self._stop.set()

    def accept(self, release: Release) -> str | None:
        """Check one release and keep it; None when accepted, else the refusal reason."""
        try:
            target = self.models.path_of(release.version)
        except StoreError as exc:
            return self._refuse(release, f"StoreError: {exc}", None)
        try:
            check_signature(release, self.config.verify_key)  # before fetching anything
            fetch_artifact(release.artifact_uri, target, self.config.s3)
            report = self._verify_local(release, target)
        except StoreUnavailable as exc:  # this side cannot reach the store: nothing is known
            exc.add_note("releases not yet fetched are checked when the sync runs again")
            raise
        except (SigningError, StoreError, ModelError, CanaryError, OSError, ValueError) as exc:
            return self._refuse(release, f"{type(exc).__name__}: {exc}", target)
        self.models.record_accepted(release.version, release.describe(), report)
        log.info("release %s accepted (canary %.2f s)", release.version, report["seconds"])
        return None

    def _refuse(self, release: Release, reason: str, fetched: Path | None) -> str:
        """Log and record a refusal and drop what was fetched for it; returns the reason."""
        log.error("release %s refused: %s", release.version, reason)
        if fetched is not None and self.models.current() != release.version:
            shutil.rmtree(fetched, ignore_errors=True)
        self.models.record_refused(release.version, reason, release.describe())
        return reason

    def _verify_local(self, release: Release, path: Path) -> dict[str, Any]:
        """Hashes, identity and canary of an artifact already on this side."""
        artifact = load_artifact(path)
        if artifact.metadata["metadata_sha256"] != release.sha256:
            raise ModelError(f"artifact at {release.artifact_uri} has metadata_sha256 "
                             f"{artifact.metadata['metadata_sha256']}, the release signed "
                             f"{release.sha256}: it is not the released model")
        if artifact.version != release.version:
            raise ModelError(f"artifact is version {artifact.version}, the release says "
                             f"{release.version}")
        return canary(path, self.config.device, self.config.canary_users)

    def handle(self, releases: list[Release], stats: SyncStats) -> None:
        """Check new releases in order, then point ``current`` to the newest accepted one."""
        newest = None
        try:
            for release in releases:
                if self.models.seen(release.describe()):
                    stats.skipped += 1
                    continue
                reason = self.accept(release)
                if reason is None:
                    stats.accepted.append(release.version)
                    newest = release.version
                else:
                    stats.refused[release.version] = reason
        finally:  # the store became unavailable: those accepted before are served all the same
            if newest is not None and newest != self.models.current():
                self.models.point_current(newest, "release")
                log.info("current -> %s", newest)
            stats.current = self.models.current()

    @kafka_errors("follow the releases {self.config.releases_topic!r} on "
                  "{self.config.public_bootstrap}",
                  "is the public cluster reachable (STREAMREC_PUBLIC_BOOTSTRAP)?")
    def run(self, once: bool = False, idle_exit_s: float | None = None) -> SyncStats:
        """Follow the releases until stopped (``once``: until the topic's end as of now)."""
        c = self.config
        stats = SyncStats(current=self.models.current())
        while not topic_exists(c.public_bootstrap, c.releases_topic, c.timeout_s):
            log.info("no releases topic %s yet: waiting for the trainer", c.releases_topic)
            if once or self._stop.wait(5.0):
                return stats
        reader = ReleaseReader(c.public_bootstrap, c.releases_topic, c.model_name)
        try:
            self.handle(reader.read_to_end(c.timeout_s), stats)
            last = time.monotonic()
            while not (once or self._stop.is_set()):
                releases = reader.poll(0.5)
                if releases:
                    self.handle(releases, stats)
                    last = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - last >= idle_exit_s:
                    break
        finally:
            reader.close()
        return stats

    @_current_unchanged()
    def promote(self, version: str) -> None:
        """Verify a held version again (hashes, signature, canary), then make it current."""
        registry = self.models.registry()
        record = registry["versions"].get(version)
        if record is None:
            refused = registry["refused"].get(version)
            why = f"it was refused: {refused['reason']}" if refused else "it is not held here"
            raise StoreError(f"cannot promote {version}: {why}")
        release = _release_of(record["release"])
        check_signature(release, self.config.verify_key)
        self._verify_local(release, self.models.path_of(version))
        self.models.point_current(version, "promote")

    @_current_unchanged()
    def rollback(self) -> str:
        """Point ``current`` back to the previous good version (verified again); returns it."""
        previous = self.models.previous_good()
        if previous is None:
            raise StoreError("no earlier good version to roll back to; `streamrec models list` "
                             "shows the versions held")
        current = self.models.current()
        record = self.models.registry()["versions"][previous]
        release = _release_of(record["release"])
        check_signature(release, self.config.verify_key)
        self._verify_local(release, self.models.path_of(previous))
        if current is not None:
            self.models.mark_rolled_back(current)
        self.models.point_current(previous, "rollback")
        return previous


def _release_of(described: dict[str, Any]) -> Release:
    """The Release of a registry record (``Release.describe`` form)."""
    signature = described.get("signature")
    return Release.from_record({**described,
                                "signature": bytes.fromhex(signature) if signature else None})

