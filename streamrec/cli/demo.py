"""``streamrec demo`` — the whole private-cloud path live on this machine (see streamrec.demo)."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from streamrec import demo
from streamrec.broker import start_clusters
from streamrec.cli.broker import distribution, local_clusters
from streamrec.errors import ConfigError
from streamrec.settings import Settings
from streamrec.topology import ensure_private_topics, ensure_public_topics


def _brokers(settings: Settings) -> list:
    """Start the local clusters unless they run; return those this demo started."""
    clusters = local_clusters(settings)
    started = start_clusters(clusters, distribution(settings), settings.broker_start_timeout_s)
    ensure_private_topics(settings)
    ensure_public_topics(settings)
    return [c for c in clusters if c.name in started]


def run(args: argparse.Namespace, settings: Settings) -> int:
    console = Console()
    data_root = args.datasets or demo.find_datasets(Path.cwd())
    if args.datasets and not (args.datasets / demo.YOOCHOOSE).is_dir():
        raise ConfigError(f"{args.datasets} has no {demo.YOOCHOOSE}/ folder; point --datasets "
                          "at the shared datasets or use --synthetic")
    if args.synthetic:
        data_root = None
    work = settings.data_dir / "demo"
    console.print("[bold]streamrec demo[/]: starting the local Kafka clusters ...")
    started = _brokers(settings)
    processes: dict = {}
    stop = threading.Event()
    try:
        train_file, live, source = demo.demo_data(data_root, work)
        stale = demo.drop_stale_worker_state(settings)
        if stale:
            console.print(f"removed {stale}: worker state of an earlier cluster whose topics are "
                          "gone")
        tag = "yoochoose" if data_root else "synthetic"
        model = demo.train_model(train_file, settings.artifact_dir / f"demo-{tag}",
                                 work / "train.log")
        if args.no_loop:
            processes = {"worker": demo.start(["worker", "--model", str(model)],
                                              work / demo.LOGS["worker"])}
        else:
            processes = demo.start_loop(settings, model, work)
        console.print(f"model ready: {model}; started {', '.join(processes)} "
                      f"(logs in {work})")
        stats = demo.LiveStats()
        threads = [
            threading.Thread(target=demo.follow_recommendations, args=(settings, stats, stop),
                             daemon=True),
            threading.Thread(target=demo.stream_events,
                             args=(settings, live, args.rate, stats, stop), daemon=True),
        ]
        threads[0].start()
        time.sleep(3)  # the subscriber joins before the first event is sent
        threads[1].start()
        dead = _show(console, stats, source, processes, args.duration, threads[1], work)
        if dead:
            log = work / demo.LOGS[dead]
            console.print(f"[bold red]the {dead} process stopped[/] (exit code "
                          f"{processes[dead].poll()}); its log {log} ends with:\n"
                          f"{demo.log_tail(log)}")
            return 1
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        stop.set()
        for proc in processes.values():
            demo.stop_process(proc)
        if not args.keep_brokers:
            for cluster in started:
                cluster.stop()
    return 0


MAX_RESTARTS = 3  # of a stalled process, before the demo gives up on it


def _show(console: Console, stats, source: str, processes: dict, duration: float | None,
          producer: threading.Thread, work: Path) -> str | None:
    """Show the live view until done; return the name of a process that died, if one did
    (a stalled worker is restarted instead, as a supervisor would)."""
    deadline = time.monotonic() + duration if duration else None
    restarted: dict[str, int] = {}

    def view():
        alive = {name: proc.poll() is None for name, proc in processes.items()}
        return demo.render(stats, source, alive)

    with Live(view(), console=console, refresh_per_second=2) as live:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)
            live.update(view())
            for name, proc in list(processes.items()):
                if demo.restarts(proc) and restarted.get(name, 0) < MAX_RESTARTS:
                    restarted[name] = restarted.get(name, 0) + 1
                    console.print(f"the {name} reported itself stalled; starting it again")
                    processes[name] = demo.run_logged(proc.args, work / demo.LOGS[name])
            dead = [name for name, proc in processes.items() if proc.poll() is not None]
            if dead:
                return dead[0]
            if not producer.is_alive() and stats.recommendations and deadline is None:
                time.sleep(3)  # let the last recommendations arrive
                live.update(view())
                break
    console.print("[bold]demo finished[/]: all live events streamed.")
    return None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo``."""
    p = sub.add_parser("demo", help="run the live demo (local brokers, model, worker, data)")
    p.add_argument("--rate", type=float, default=300.0, help="events per second (default 300)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--datasets", type=Path, help="the shared datasets folder (found if beside)")
    p.add_argument("--synthetic", action="store_true", help="use generated data instead")
    p.add_argument("--no-loop", action="store_true",
                   help="only the worker: no mirror, trainer or model sync")
    p.add_argument("--keep-brokers", action="store_true",
                   help="leave the clusters running afterwards")
    p.set_defaults(func=run)
