"""``streamrec replay`` — copy a range of a topic's history, or rebuild from it.

``streamrec replay --from-topic A --to-topic B ...`` copies a time or offset range: records keep
their key, value and headers (plus origin headers) and their partition when both topics have the
same partition count, so each key's order is kept. ``--resume NAME`` makes the copy transactional
and resumable: a killed replay continues where it stopped, without duplicates.

Two jobs read a time range of the events topic instead (``replay rebuild-state``, ``replay
backfill-training``: see ``streamrec.cli.replay_jobs``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
)
from connectors.replay.spec import parse_offsets
from connectors.replay.writer import committed_positions, replay_ids
from streamrec.cli.replay_jobs import JOBS, register_jobs
from streamrec.cli.replay_ranges import (
    DEFAULT_RATE,
    estimate,
    progress,
    range_table,
    resolve_time,
)
from streamrec.errors import ConfigError
from streamrec.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Check the request, resolve the range, then run the job (or only show it with --dry-run)."""
    return (JOBS[args.job] if args.job else _replay)(args, settings)


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
    return resolve_time(bootstrap, args.from_topic, args.since, args.until)


def _plan(args: argparse.Namespace, rng: ReplayRange, target: int | None,
          checkpoint: Checkpoint | None) -> str:
    """What the replay will do: ranges, counts, partitioning, and how long it will take."""
    done = checkpoint.next if checkpoint else {}
    lines = [f"replay {args.from_topic!r} ({rng.partition_count} partitions, {args.cluster}) "
             f"-> {args.to_topic!r}" + (f", resuming {args.resume!r}" if checkpoint else "")]
    table, left_total = range_table(rng, done)
    lines += table
    lines.append("  " + _partitioning(target, rng.partition_count))
    lines.append("  " + estimate(left_total, args.rate))
    return "\n".join(lines)


def _partitioning(target: int | None, source: int) -> str:
    if target is None:
        return f"target does not exist: it is created with {source} partitions, same layout"
    if target == source:
        return "same partition count: each record keeps its partition, each key its order"
    return (f"target has {target} partitions, source {source}: records are re-partitioned by key "
            "(murmur2, like Faust and Java clients); each key's order is kept as long as the "
            "key lived in one source partition; records without a key are spread at random")


def _copy(args: argparse.Namespace, bootstrap: str, rng: ReplayRange, keep: bool) -> int:
    """A one-shot copy: idempotent producer, stops at the first failure."""
    reader = RangeReader(bootstrap, rng)
    try:
        with TargetWriter(bootstrap, args.to_topic) as writer, \
                progress(args, rng.total, 0) as bar:
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
            with progress(args, rng.total, checkpoint.done) as bar:
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
    p.set_defaults(func=run, replay_parser=p)
    register_jobs(p)


