"""The demo's live view stops, and names the process, when one of its processes dies."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time

from rich.console import Console

from streamrec import cmd_demo, demo


def test_view_returns_the_process_that_died() -> None:
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    producer = threading.Thread(target=time.sleep, args=(30,), daemon=True)
    producer.start()
    started = time.monotonic()
    try:
        name = cmd_demo._show(Console(file=io.StringIO()), demo.LiveStats(), "test",
                              {"mirror": alive, "worker": dead}, 60, producer)
    finally:
        alive.kill()
        alive.wait()
    assert name == "worker"
    assert time.monotonic() - started < 10  # it did not wait for the 60 s duration


def test_view_runs_to_its_duration_when_all_live() -> None:
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    producer = threading.Thread(target=time.sleep, args=(30,), daemon=True)
    producer.start()
    try:
        name = cmd_demo._show(Console(file=io.StringIO()), demo.LiveStats(), "test",
                              {"worker": alive}, 1.5, producer)
    finally:
        alive.kill()
        alive.wait()
    assert name is None
