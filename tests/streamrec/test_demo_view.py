"""The demo's live view stops, and names the process, when one of its processes dies."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time

from rich.console import Console

from streamrec import demo
from streamrec.cli import demo as cmd_demo


def test_view_returns_the_process_that_died(tmp_path) -> None:
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    producer = threading.Thread(target=time.sleep, args=(30,), daemon=True)
    producer.start()
    started = time.monotonic()
    try:
        name = cmd_demo._show(Console(file=io.StringIO()), demo.LiveStats(), "test",
                              {"mirror": alive, "worker": dead}, 60, producer, tmp_path)
    finally:
        alive.kill()
        alive.wait()
    assert name == "worker"
    assert time.monotonic() - started < 10  # it did not wait for the 60 s duration


def test_view_runs_to_its_duration_when_all_live(tmp_path) -> None:
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    producer = threading.Thread(target=time.sleep, args=(30,), daemon=True)
    producer.start()
    try:
        name = cmd_demo._show(Console(file=io.StringIO()), demo.LiveStats(), "test",
                              {"worker": alive}, 1.5, producer, tmp_path)
    finally:
        alive.kill()
        alive.wait()
    assert name is None


def test_a_worker_that_reports_itself_stalled_is_started_again(tmp_path) -> None:
    from streams.watchdog import EXIT_STALLED

    marker = tmp_path / "runs"
    code = (f"import pathlib, time; p = pathlib.Path({str(marker)!r}); "
            f"p.write_text(p.read_text() + 'x' if p.exists() else 'x'); "
            f"raise SystemExit({EXIT_STALLED} if len(p.read_text()) == 1 else time.sleep(30))")
    stalled = subprocess.Popen([sys.executable, "-c", code])
    stalled.wait()
    processes = {"worker": stalled}
    producer = threading.Thread(target=time.sleep, args=(30,), daemon=True)
    producer.start()
    try:
        name = cmd_demo._show(Console(file=io.StringIO()), demo.LiveStats(), "test",
                              processes, 3, producer, tmp_path)
        assert name is None and processes["worker"] is not stalled
        assert processes["worker"].poll() is None, "the restarted worker runs"
        assert marker.read_text() == "xx"
    finally:
        processes["worker"].kill()
        processes["worker"].wait()


def test_a_worker_that_fails_otherwise_ends_the_demo(tmp_path) -> None:
    failed = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    failed.wait()
    producer = threading.Thread(target=time.sleep, args=(30,), daemon=True)
    producer.start()
    assert cmd_demo._show(Console(file=io.StringIO()), demo.LiveStats(), "test",
                          {"worker": failed}, 10, producer, tmp_path) == "worker"
