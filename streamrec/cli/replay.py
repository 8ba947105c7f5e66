"""``streamrec replay`` — copy a range of a topic's history, or rebuild from it.

``streamrec replay --from-topic A --to-topic B ...`` copies a time or offset range: records keep
their key, value and headers (plus origin headers) and their partition when both topics have the
same partition count, so each key's order is kept. ``--resume NAME`` makes the copy transactional
and resumable: a killed replay continues where it stopped, without duplicates.

Two jobs read a time range of the events topic instead (``streams.offline.rebuild``,
``streams.offline.backfill``): ``replay rebuild-state`` computes the workers' user state into a
new app id (blue/green), ``replay backfill-training`` sends the range's anonymised training
samples to the private samples topic, for the mirror to carry across.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from connectors.kafka.topics import TopicSpec, ensure_topics
from connectors.replay.checkpoint import (
    Checkpoint,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from connectors.replay.history import CopyReport, RangeReader, TargetWriter, copy_range
from connectors.replay.ranges import (
    RangeError,
    ReplayRange,
    partition_count,
    resolve_offset_range,
    resolve_time_range,
    time_extent,
)
from connectors.replay.spec import format_ms, parse_offsets, parse_time
from connectors.replay.writer import committed_positions, replay_ids
from schemas import default_codec
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

DEFAULT_RATE = 20_000.0  # leaves the brokers room for live traffic unless --rate 0 says otherwise
# argparse reads "-2h" as an unknown option; let relative times pass as values, the way it
# already lets negative numbers pass (these parsers have no option that looks like one).
_RELATIVE_TIME = re.compile(r"^-\d+(\.\d+)?(ms|s|m|h|d|w)?$")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Check the request, resolve the range, then run the job (or only show it with --dry-run)."""
    jobs = {None: _replay, "rebuild-state": _rebuild, "backfill-training": _backfill}
    return jobs[args.job](args, settings)


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    missing = [name for name, given in (("--from-topic", args.from_topic),
                                        ("--to-topic", args.to_topic)) if not given]
    if missing:  # the copy needs them; the jobs do not, so argparse cannot require them
        args.replay_parser.error(f"the following arguments are required: {', '.join(missing)}")
    _check_request(args)
    bootstrap = settings.servers(args.cluster)
    path = checkpoint_path(settings.data_dir, args.resume) if args.resume else None
    checkpoint = load_checkpoint(path) if path else None
    if checkpoint is not None:
        _check_same_replay(checkpoint, args)
        count = partition_count(bootstrap, args.from_topic)
        if count is None:
            raise RangeError(f"topic {args.from_topic!r} of checkpoint {path} is gone")
        rng = ReplayRange.from_dict(args.from_topic, count, checkpoint.ranges)
    else:
        if not (args.since or args.offsets):
            raise ConfigError("say what to replay: --since TIME [--until TIME] or --offsets "
                              "P:START-END,…" + (f" (no checkpoint {path} yet)" if path else ""))
        rng = _resolve(args, bootstrap)
    target = partition_count(bootstrap, args.to_topic)  # None: missing, created like the source
    print(_plan(args, rng, target, checkpoint), file=sys.stdout if args.dry_run else sys.stderr)
    if args.dry_run:
        return 0
    if target is None:
        ensure_topics(bootstrap, [TopicSpec(args.to_topic, rng.partition_count)])
    keep = target in (None, rng.partition_count)
    if path is None:
        return _copy(args, bootstrap, rng, keep)
    return _copy_resumable(args, bootstrap, rng, keep, path, checkpoint)


def _check_request(args: argparse.Namespace) -> None:
    if args.from_topic == args.to_topic:
        raise ConfigError(
            f"refusing to replay {args.from_topic!r} into itself: its consumers would see its "
            f"history twice. Replay into another topic, e.g. --to-topic {args.from_topic}.replay")
    if args.offsets and (args.since or args.until):
        raise ConfigError("give either --since/--until or --offsets, not both")
    if args.until and not args.since:
        raise ConfigError("--until needs --since (the start of the time range)")
    if args.rate < 0:
        raise ConfigError(f"--rate must be 0 (uncapped) or positive, got {args.rate:g}")


def _spec(args: argparse.Namespace) -> str:
    if args.offsets:
        return f"--offsets {args.offsets}"
    return f"--since {args.since} --until {args.until or 'now'}" if args.since else ""


def _check_same_replay(checkpoint: Checkpoint, args: argparse.Namespace) -> None:
    given = (args.cluster, args.from_topic, args.to_topic)
    stored = (checkpoint.cluster, checkpoint.from_topic, checkpoint.to_topic)
    if given != stored:
        raise ConfigError(
            f"replay {checkpoint.name!r} copies {stored[1]!r} to {stored[2]!r} on {stored[0]}, "
            f"not {given[1]!r} to {given[2]!r} on {given[0]}; use another --resume name")
    if _spec(args) and _spec(args) != checkpoint.spec:
        raise ConfigError(
            f"replay {checkpoint.name!r} was started with {checkpoint.spec}; resume it with "
            "the same range options or none (its resolved ranges are kept), or use another name")


def _resolve(args: argparse.Namespace, bootstrap: str) -> ReplayRange:
    if args.offsets:
        rng = resolve_offset_range(bootstrap, args.from_topic, parse_offsets(args.offsets))
        if rng.total == 0:
            raise RangeError(f"nothing to replay: {args.from_topic!r} has no records at offsets "
                             f"{args.offsets} (each range starts at the partition's end)")
        return rng
    return _resolve_time(bootstrap, args.from_topic, args.since, args.until)


def _resolve_time(bootstrap: str, topic: str, since_text: str, until_text: str | None
                  ) -> ReplayRange:
    """The offsets of ``topic`` from ``--since`` until ``--until``; refuse an empty range."""
    now = int(time.time() * 1000)
    since, until = parse_time(since_text, now), parse_time(until_text or "now", now)
    rng = resolve_time_range(bootstrap, topic, since, until)
    if rng.total == 0:
        extent = time_extent(bootstrap, topic)
        holds = (f"its records span {format_ms(extent[0])} to {format_ms(extent[1])}"
                 if extent else "it holds no records at all")
        raise RangeError(f"nothing to replay: {topic!r} has no records from "
                         f"{format_ms(since)} until {format_ms(until)}; {holds}. Check "
                         "--since/--until (times without a zone are UTC)")
    return rng


def _plan(args: argparse.Namespace, rng: ReplayRange, target: int | None,
          checkpoint: Checkpoint | None) -> str:
    """What the replay will do: ranges, counts, partitioning, and how long it will take."""
    done = checkpoint.next if checkpoint else {}
    lines = [f"replay {args.from_topic!r} ({rng.partition_count} partitions, {args.cluster}) "
             f"-> {args.to_topic!r}" + (f", resuming {args.resume!r}" if checkpoint else "")]
    table, left_total = _range_table(rng, done)
    lines += table
    lines.append("  " + _partitioning(target, rng.partition_count))
    lines.append("  " + _estimate(left_total, args.rate))
    return "\n".join(lines)


def _range_table(rng: ReplayRange, done: dict[int, int]) -> tuple[list[str], int]:
    """Lines of the per-partition table of a range, and the offsets left in it."""
    lines = [f"  {'partition':>9}  {'first':>12}  {'last':>12}  {'records':>10}  {'left':>10}"]
    left_total = 0
    for r in rng.partitions:
        left = r.end - max(r.start, done.get(r.partition, r.start))
        left_total += left
        first, last = (str(r.start), str(r.end - 1)) if r.count else ("-", "-")
        lines.append(f"  {r.partition:>9}  {first:>12}  {last:>12}  {r.count:>10,}  {left:>10,}")
    lines.append(f"  {'total':>9}  {'':>12}  {'':>12}  {rng.total:>10,}  {left_total:>10,}")
    return lines, left_total


def _partitioning(target: int | None, source: int) -> str:
    if target is None:
        return f"target does not exist: it is created with {source} partitions, same layout"
    if target == source:
        return "same partition count: each record keeps its partition, each key its order"
    return (f"target has {target} partitions, source {source}: records are re-partitioned by key "
            "(murmur2, like Faust and Java clients); each key's order is kept as long as the "
            "key lived in one source partition; records without a key are spread at random")


def _estimate(records: int, rate: float) -> str:
    if not rate:
        return f"{records:,} records uncapped (--rate 0): as fast as the cluster takes them"
    seconds = records / rate
    took = (f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200
            else f"{seconds / 3600:.1f} h")
    return f"{records:,} records at up to {rate:,.0f} events/s: about {took}"


def _progress(args: argparse.Namespace, total: int, initial: int, desc: str = "replay") -> tqdm:
    return tqdm(total=total, initial=initial, unit=" ev", unit_scale=True, desc=desc,
                file=sys.stderr, mininterval=0.5, disable=True if args.quiet else None)


def _copy(args: argparse.Namespace, bootstrap: str, rng: ReplayRange, keep: bool) -> int:
    """A one-shot copy: idempotent producer, stops at the first failure."""
    reader = RangeReader(bootstrap, rng)
    try:
        with TargetWriter(bootstrap, args.to_topic) as writer, \
                _progress(args, rng.total, 0) as bar:
            report = copy_range(reader, writer, keep_partitions=keep, rate=args.rate or None,
                                commit_interval_s=args.commit_interval, on_progress=bar.update)
    finally:
        reader.close()
    _summary(args, report, None)
    return 0


def _copy_resumable(args: argparse.Namespace, bootstrap: str, rng: ReplayRange, keep: bool,
                    path: Path, checkpoint: Checkpoint | None) -> int:
    """A transactional copy whose positions are committed with the records it wrote."""
    ids = replay_ids(args.resume)
    with TargetWriter(bootstrap, args.to_topic, transactional_id=ids) as writer:
        # Only now, with the dead run's transaction aborted, are the committed positions final.
        committed = committed_positions(bootstrap, ids, rng.topic,
                                        [r.partition for r in rng.partitions])
        if checkpoint is None:
            if committed:
                raise ConfigError(
                    f"there is no checkpoint {path}, but Kafka group {ids!r} holds positions of "
                    f"an earlier replay named {args.resume!r}: use another --resume name")
            checkpoint = Checkpoint(args.resume, args.cluster, args.from_topic, args.to_topic,
                                    _spec(args), rng.as_dict())
        checkpoint.advance(committed)  # the file may lag the last committed transaction
        save_checkpoint(path, checkpoint)
        if checkpoint.complete:
            print(f"replay {args.resume!r} is already complete ({checkpoint.total:,} offsets); "
                  "nothing to do", file=sys.stderr)
            return 0

        def on_commit(positions: dict[int, int]) -> None:
            checkpoint.advance(positions)
            save_checkpoint(path, checkpoint)

        reader = RangeReader(bootstrap, rng, positions=checkpoint.next, group_id=ids)
        try:
            with _progress(args, rng.total, checkpoint.done) as bar:
                report = copy_range(reader, writer, keep_partitions=keep,
                                    rate=args.rate or None,
                                    commit_interval_s=args.commit_interval,
                                    on_commit=on_commit, on_progress=bar.update)
        except KeyboardInterrupt:
            print(f"{checkpoint.done:,} of {checkpoint.total:,} offsets are committed; run the "
                  f"same command to continue replay {args.resume!r}", file=sys.stderr)
            raise
        finally:
            reader.close()
    _summary(args, report, path)
    return 0


def _summary(args: argparse.Namespace, report: CopyReport, path: Path | None) -> None:
    where = f"; checkpoint {path} complete" if path else ""
    print(f"replayed {report.read:,} records of {args.from_topic!r} to {args.to_topic!r} in "
          f"{report.seconds:.1f} s ({report.rate:,.0f} events/s, {report.commits} commits)"
          f"{where}", file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``replay``."""
    p = sub.add_parser(
        "replay", help="copy a time or offset range of a topic into another topic",
        description="Re-produce a range of a topic's history into another topic of the same "
                    "cluster: original keys, values and headers, plus streamrec.origin.* "
                    "headers (topic, partition, offset, timestamp).")
    p.add_argument("--from-topic", help="topic to read history from (required for a copy)")
    p.add_argument("--to-topic", help="topic to write it to, created if missing (required for "
                   "a copy)")
    p.add_argument("--cluster", choices=["private", "public"], default="private",
                   help="cluster of both topics (default: private)")
    p.add_argument("--since", metavar="TIME", help="first record time: ISO-8601 (UTC unless "
                   "a zone is given), epoch ms, or relative like -2h")
    p.add_argument("--until", metavar="TIME", help="end of the time range, exclusive "
                   "(default: now)")
    p.add_argument("--offsets", metavar="P:START-END,…", help="offset ranges per partition, "
                   "END inclusive; P:START- reads to the current end")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE, metavar="EVENTS/S",
                   help=f"cap the copy rate (default {DEFAULT_RATE:,.0f}; 0 = uncapped)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved ranges and counts, copy nothing")
    p.add_argument("--resume", metavar="NAME",
                   help="transactional, resumable replay: its checkpoint is "
                        "STREAMREC_DATA_DIR/replay/NAME.json; run again with the same NAME "
                        "to continue after an interruption")
    p.add_argument("--commit-interval", type=float, default=1.0, metavar="SECONDS",
                   help="seconds between commits (transactions with --resume; default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p._negative_number_matcher = _RELATIVE_TIME
    p.set_defaults(func=run, replay_parser=p)
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


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """``replay rebuild-state``: compute user state into a new app id, then say how to switch."""
    _check_job(args)
    generation = Generation(settings.private_servers, settings.events_topic,
                            settings.partitions, settings.app_id,
                            args.app_id or next_generation(settings.app_id))
    check_generation(generation)
    rng = _resolve_time(generation.bootstrap, generation.events_topic, args.since, args.until)
    table, _left = _range_table(rng, {})
    print("\n".join([f"rebuild user state of app {settings.app_id!r} from "
                     f"{rng.topic!r} ({rng.partition_count} partitions) into app id "
                     f"{generation.app_id!r} (changelog {generation.changelog!r})", *table]),
          file=sys.stdout if args.dry_run else sys.stderr)
    if args.dry_run:
        return 0
    recommend = _recommend_to(args, settings) if args.emit_recommendations else None
    with _progress(args, rng.total, 0, "rebuild") as bar:
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


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    """``replay backfill-training``: the range's anonymised samples into the samples topic."""
    _check_job(args)
    if args.rate < 0:
        raise ConfigError(f"--rate must be 0 (uncapped) or positive, got {args.rate:g}")
    bootstrap = settings.private_servers
    rng = _resolve_time(bootstrap, settings.events_topic, args.since, args.until)
    table, left = _range_table(rng, {})
    print("\n".join([f"backfill training samples from {rng.topic!r} ({rng.partition_count} "
                     f"partitions) into the private {settings.samples_topic!r}", *table,
                     "  " + _estimate(left, args.rate)]),
          file=sys.stdout if args.dry_run else sys.stderr)
    if settings.samples_topic not in settings.mirror_allowlist:
        print(f"note: STREAMREC_MIRROR_ALLOWLIST does not list {settings.samples_topic!r}: the "
              "mirror will not carry these samples to the training topic", file=sys.stderr)
    if args.dry_run:
        return 0
    ensure_topics(bootstrap, [TopicSpec(settings.samples_topic, settings.partitions)])
    with _progress(args, rng.total, 0, "backfill") as bar:
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
    p._negative_number_matcher = _RELATIVE_TIME


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
