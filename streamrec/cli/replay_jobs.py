"""``streamrec replay rebuild-state`` and ``replay backfill-training``: jobs over the events topic.

Both read a time range of the events topic with the workers' own batch logic
(``streams.offline.rebuild``, ``streams.offline.backfill``): rebuild-state computes the workers'
user state into a new app id (blue/green), backfill-training sends the range's anonymised
training samples to the private samples topic, for the mirror to carry across.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from connectors.kafka.topics import TopicSpec, ensure_topics
from schemas import default_codec
from streamrec.cli.replay_ranges import (
    DEFAULT_RATE,
    estimate,
    progress,
    range_table,
    resolve_time,
)
from streamrec.components import anonymizer_for
from streamrec.errors import ConfigError
from streamrec.settings import Settings
from streams.offline.backfill import BackfillReport, backfill_samples
from streams.offline.rebuild import (
    Generation,
    RebuildReport,
    RecommendTo,
    check_generation,
    next_generation,
    rebuild_state,
)
from streams.pipeline import BatchProcessor
from streams.popularity import DecayedPopularity


def register_jobs(p: argparse.ArgumentParser) -> None:
    """Add the jobs to the ``replay`` parser (which runs them: see ``JOBS``)."""
    jobs = p.add_subparsers(dest="job", metavar="JOB", title="jobs over the events topic "
                            "(instead of a copy)")
    _register_rebuild(jobs)
    _register_backfill(jobs)


def _check_job(args: argparse.Namespace) -> None:
    copy_only = [name for name, given in (("--from-topic", args.from_topic), ("--to-topic",
                 args.to_topic), ("--offsets", args.offsets), ("--resume", args.resume)) if given]
    if copy_only:
        raise ConfigError(f"{' and '.join(copy_only)} belong to a copy; {args.job} reads the "
                          "events topic named by STREAMREC_EVENTS_TOPIC on the private cluster")


def _processor(settings: Settings, *, samples: bool) -> BatchProcessor:
    """The workers' batch logic, built from the settings as ``streams.app`` builds it."""
    anonymizer = anonymizer_for(settings)
    return BatchProcessor(
        default_codec(), top_k=settings.top_k, history_len=settings.history_len,
        buckets=anonymizer.query_buckets, popularity=DecayedPopularity(),
        anonymize=anonymizer.anonymize if samples else None, source=f"replay {settings.app_id}")


def rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """``replay rebuild-state``: compute user state into a new app id, then say how to switch."""
    _check_job(args)
    generation = Generation(settings.private_servers, settings.events_topic,
                            settings.partitions, settings.app_id,
                            args.app_id or next_generation(settings.app_id))
    check_generation(generation)
    rng = resolve_time(generation.bootstrap, generation.events_topic, args.since, args.until)
    table, _left = range_table(rng, {})
    print("\n".join([f"rebuild user state of app {settings.app_id!r} from "
                     f"{rng.topic!r} ({rng.partition_count} partitions) into app id "
                     f"{generation.app_id!r} (changelog {generation.changelog!r})", *table]),
          file=sys.stdout if args.dry_run else sys.stderr)
    if args.dry_run:
        return 0
    recommend = _recommend_to(args, settings) if args.emit_recommendations else None
    with progress(args, rng.total, 0, "rebuild") as bar:
        report = rebuild_state(generation, rng, _processor(settings, samples=False),
                               settings.data_dir / "rebuild", recommend=recommend,
                               on_progress=bar.update)
    _rebuild_summary(settings, generation, report, recommend)
    return 0


def _recommend_to(args: argparse.Namespace, settings: Settings) -> RecommendTo:
    """Where fresh recommendations go and what scores them (checked before any work)."""
    topic, model_dir = args.emit_recommendations, args.model or settings.model_dir
    if topic == settings.events_topic:
        raise ConfigError(f"--emit-recommendations {topic!r} is the events topic; name the "
                          "recommendations topic (or another one)")
    if model_dir is not None and not model_dir.exists():
        raise ConfigError(f"model artifact {model_dir} does not exist")
    # Partitioned like the events: each user's recommendation goes to its events' partition.
    ensure_topics(settings.private_servers, [TopicSpec(topic, settings.partitions)])
    if model_dir is None:
        print("no model (--model or STREAMREC_MODEL_DIR): recommending by the range's "
              "popularity, as a worker without a model does", file=sys.stderr)
        return RecommendTo(topic, None)
    from model.scorer import Scorer  # ONNX Runtime, loaded only when scoring is asked for

    # Any: its read-only ``version`` property satisfies the pipeline's Scorer protocol at run
    # time, though not mypy's reading of a protocol attribute.
    scorer: Any = Scorer(model_dir, settings.scoring_device)
    if scorer.k < settings.top_k:
        raise ConfigError(f"model {scorer.version} gives at most {scorer.k} items; "
                          f"STREAMREC_TOP_K is {settings.top_k}")
    return RecommendTo(topic, scorer)


def _rebuild_summary(settings: Settings, gen: Generation, report: RebuildReport,
                     recommend: RecommendTo | None) -> None:
    recs = (f"; {report.recommendations:,} recommendations to {recommend.topic!r}"
            if recommend else "")
    print(f"rebuilt the state of {report.users:,} users from {report.events:,} events "
          f"({report.applied:,} applied, {report.invalid:,} invalid skipped) in "
          f"{report.seconds:.1f} s ({report.rate:,.0f} events/s; states computed in "
          f"{report.build_seconds:.1f} s); {report.tombstones:,} stale key(s) removed{recs}\n"
          f"app id {gen.app_id!r} is ready: its workers restore this state and go on right "
          f"after the range. Start them with STREAMREC_APP_ID={gen.app_id} and a data directory "
          "of their own (Faust keeps table files per data directory and web port, not per app "
          f"id), wait until they have caught up, then stop the {settings.app_id!r} workers",
          file=sys.stderr)


def backfill(args: argparse.Namespace, settings: Settings) -> int:
    """``replay backfill-training``: the range's anonymised samples into the samples topic."""
    _check_job(args)
    if args.rate < 0:
        raise ConfigError(f"--rate must be 0 (uncapped) or positive, got {args.rate:g}")
    bootstrap = settings.private_servers
    rng = resolve_time(bootstrap, settings.events_topic, args.since, args.until)
    table, left = range_table(rng, {})
    print("\n".join([f"backfill training samples from {rng.topic!r} ({rng.partition_count} "
                     f"partitions) into the private {settings.samples_topic!r}", *table,
                     "  " + estimate(left, args.rate)]),
          file=sys.stdout if args.dry_run else sys.stderr)
    if settings.samples_topic not in settings.mirror_allowlist:
        print(f"note: STREAMREC_MIRROR_ALLOWLIST does not list {settings.samples_topic!r}: the "
              "mirror will not carry these samples to the training topic", file=sys.stderr)
    if args.dry_run:
        return 0
    ensure_topics(bootstrap, [TopicSpec(settings.samples_topic, settings.partitions)])
    with progress(args, rng.total, 0, "backfill") as bar:
        report = backfill_samples(bootstrap, rng, settings.samples_topic,
                                  _processor(settings, samples=True), rate=args.rate or None,
                                  on_progress=bar.update)
    _backfill_summary(settings, report)
    return 0


def _backfill_summary(settings: Settings, report: BackfillReport) -> None:
    copy = report.copy
    print(f"backfilled {report.samples:,} samples from {copy.read:,} events of "
          f"{settings.events_topic!r} to {settings.samples_topic!r} in {copy.seconds:.1f} s "
          f"({copy.rate:,.0f} events/s; {report.not_sampled:,} not sampled, {report.invalid:,} "
          f"invalid). `streamrec mirror` carries them to {settings.train_topic!r}; sample ids "
          "are stable, so the trainer keeps one sample per sample_id", file=sys.stderr)


def _add_range_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", metavar="TIME", required=True,
                   help="first record time (Kafka timestamp, as for a copy): ISO-8601 (UTC "
                        "unless a zone is given), epoch ms, or relative like -7d")
    p.add_argument("--until", metavar="TIME", help="end of the range, exclusive (default: now)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved ranges only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _register_rebuild(jobs: argparse._SubParsersAction) -> None:
    p = jobs.add_parser(
        "rebuild-state", help="rebuild the workers' user state from a range of the events topic "
        "into a new app id, while the live workers keep serving",
        description="Compute every user's state from the events of the range with the workers' "
                    "own code and publish it as the user-state changelog of a new app id, whose "
                    "consumer group is positioned right after the range. Workers started with "
                    "that app id serve the rebuilt state and go on from there: nothing applied "
                    "twice, nothing skipped. Running it again gives the same state.")
    _add_range_options(p)
    p.add_argument("--app-id", metavar="NEW", help="app id of the new generation (default: the "
                   "live STREAMREC_APP_ID with -g2, -g3, ... counted up)")
    p.add_argument("--emit-recommendations", metavar="TOPIC", help="also send a fresh "
                   "recommendation for every rebuilt user to TOPIC")
    p.add_argument("--model", type=Path, metavar="DIR", help="model artifact to score with "
                   "(default: STREAMREC_MODEL_DIR; none: popularity)")


def _register_backfill(jobs: argparse._SubParsersAction) -> None:
    p = jobs.add_parser(
        "backfill-training", help="send anonymised training samples of a range of the events "
        "topic to the private samples topic (the mirror carries them across)",
        description="Anonymise every event of the range as the workers do (same sample ids) "
                    "and send the samples to STREAMREC_SAMPLES_TOPIC on the private cluster; "
                    "`streamrec mirror` checks them and carries them to the public training "
                    "topic. Running it again re-sends the same sample ids.")
    _add_range_options(p)
    p.add_argument("--rate", type=float, default=DEFAULT_RATE, metavar="EVENTS/S",
                   help=f"cap the read rate (default {DEFAULT_RATE:,.0f}; 0 = uncapped)")


JOBS = {"rebuild-state": rebuild, "backfill-training": backfill}
