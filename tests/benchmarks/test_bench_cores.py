"""The benchmark's core split: which cores, pinning every thread of a process, undoing it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from benchmarks.cores import CoreSplit, listening_pids, pin_process, restore, split_cores

CHILD = """
import threading, time
threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
print("ready", flush=True)
time.sleep(30)
"""


def test_split_gives_the_last_cores_to_the_worker() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    split = split_cores(1)
    if len(cpus) < 2:
        assert split is None
        return
    assert split == (frozenset(cpus[-1:]), frozenset(cpus[:-1]))
    assert split_cores(len(cpus)) is None


def test_listening_pids_finds_the_listener() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listening_pids([f"127.0.0.1:1,127.0.0.1:{port}"]) == [os.getpid()]
    assert listening_pids([f"127.0.0.1:{port}"]) == []


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_every_thread_is_pinned_and_given_back() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        tasks = f"/proc/{child.pid}/task"
        original = {int(t): os.sched_getaffinity(int(t)) for t in os.listdir(tasks)}
        assert len(original) >= 2
        one = frozenset([min(os.sched_getaffinity(0))])
        before = pin_process(child.pid, one)
        assert before == original
        assert all(os.sched_getaffinity(int(t)) == one for t in os.listdir(tasks))
        restore(child.pid, before)
        assert {int(t): os.sched_getaffinity(int(t)) for t in os.listdir(tasks)} == original
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_core_split_moves_this_process_and_brokers_and_undoes_it() -> None:
    worker_cpus, other_cpus = split_cores(1)
    broker = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    mine = os.sched_getaffinity(0)
    try:
        assert broker.stdout.readline().strip() == "ready"
        with CoreSplit(worker_cpus, other_cpus, [broker.pid]) as split:
            assert os.sched_getaffinity(0) == set(other_cpus)
            assert os.sched_getaffinity(broker.pid) == set(other_cpus)
            assert split.describe()["worker_cpus"] == sorted(worker_cpus)
            time.sleep(0.01)
        assert os.sched_getaffinity(0) == mine
        assert os.sched_getaffinity(broker.pid) == mine
    finally:
        broker.kill()
        broker.wait()
