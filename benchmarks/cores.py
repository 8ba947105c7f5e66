"""Give the worker cores of its own during a benchmark; brokers and load generator get the rest.

On a small machine the worker, the local brokers, the load generator and the subscriber all
share the same cores, and the worker's latency then measures their contention as much as the
worker. In production a worker does not share its cores with a Kafka broker. ``CoreSplit`` pins
the worker to some cores (``worker_cpus``) and the brokers (found by their listening ports) and
this benchmark process to the others, and undoes it on exit.

Linux affinity is per thread, so every thread of a process is pinned; threads started later
inherit the affinity of the thread that starts them.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def split_cores(worker_cores: int = 1) -> tuple[frozenset[int], frozenset[int]] | None:
    """(the worker's cores, everyone else's), the worker's being the last ones; None when this
    process may run on fewer than ``worker_cores + 1`` cores."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) <= worker_cores:
        return None
    return frozenset(cpus[-worker_cores:]), frozenset(cpus[:-worker_cores])


def listening_pids(bootstraps: list[str]) -> list[int]:
    """Local processes listening on the ports of these bootstrap lists (``host:port,...``): the
    brokers, when they run here."""
    ports = {int(address.rsplit(":", 1)[1]) for servers in bootstraps
             for address in servers.split(",") if address}
    pids = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in ports:
            if conn.pid is not None:
                pids.add(conn.pid)
    return sorted(pids)


def pin_process(pid: int, cpus: frozenset[int]) -> dict[int, set[int]]:
    """Pin every thread of ``pid`` to ``cpus``; return each thread's affinity before."""
    before = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        tid = int(task.name)
        try:
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):  # a thread that just ended
            continue
    return before


def restore(pid: int, before: dict[int, set[int]]) -> None:
    """Give the threads of ``pid`` the affinity they had before ``pin_process``; threads started
    since get that of the process's first thread."""
    default = before.get(pid, set(range(os.cpu_count() or 1)))
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), before.get(int(task.name), default))
        except (ProcessLookupError, PermissionError):
            continue


class CoreSplit:
    """Context: the brokers and this process on ``other_cpus`` (see ``split_cores``); whoever
    starts the worker puts it on ``worker_cpus`` (``WorkerProcess(cpus=...)``). Reusable."""

    def __init__(self, worker_cpus: frozenset[int], other_cpus: frozenset[int],
                 broker_pids: list[int]) -> None:
        self.worker_cpus = worker_cpus
        self.other_cpus = other_cpus
        self.broker_pids = broker_pids
        self._before: dict[int, dict[int, set[int]]] = {}

    def __enter__(self) -> CoreSplit:
        for pid in [*self.broker_pids, os.getpid()]:
            self._before[pid] = pin_process(pid, self.other_cpus)
        return self

    def __exit__(self, *exc: object) -> None:
        for pid, before in self._before.items():
            if psutil.pid_exists(pid):
                restore(pid, before)
        self._before = {}

    def describe(self) -> dict:
        """What was pinned where, for the report."""
        return {"worker_cpus": sorted(self.worker_cpus), "others_cpus": sorted(self.other_cpus),
                "brokers_pinned": len(self.broker_pids)}
