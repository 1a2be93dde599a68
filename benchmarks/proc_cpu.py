"""CPU time and memory of processes, read from ``/proc`` (Linux), for the benchmarks.

The benchmarks compare CPU microseconds per event of processes they start (the worker,
the gateway, PostgreSQL, Kafka Connect), so every one of them reads the same fields the
same way: ``utime + stime`` of a process and, for a process tree, of every live descendant
plus the children each has already waited for (``cutime + cstime``: a PostgreSQL backend
that ended is counted in its postmaster's). Written by hand because psutil, which would
do it, is not a dependency of the project and these are four fields of one file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

__all__ = ["cpu_seconds", "peak_rss_mb", "postgres_cpu_seconds", "tree_cpu_seconds"]

_TICK = os.sysconf("SC_CLK_TCK")


class _Cluster(Protocol):
    @property
    def data(self) -> Path: ...


def _stat(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads) so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu_seconds(root: int) -> float:
    """CPU time of ``root`` and every live descendant, plus the children each of them has
    already waited for."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, ValueError, IndexError):
                continue  # ended meanwhile
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for pid in tree:
        try:
            fields = _stat(pid)
        except (OSError, IndexError):
            continue  # ended meanwhile
        total += sum(int(fields[k]) for k in (11, 12, 13, 14))  # utime stime cutime cstime
    return total / _TICK


def postgres_cpu_seconds(cluster: _Cluster | None) -> float:
    """CPU time of a cluster's postmaster and all its backends so far, ended ones included
    (0 without a cluster)."""
    if cluster is None:
        return 0.0
    return tree_cpu_seconds(int((cluster.data / "postmaster.pid").read_text().split()[0]))


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of one process (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
