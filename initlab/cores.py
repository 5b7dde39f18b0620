"""How many cores this process may use, without importing torch (the report's processes need not)."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity (what a cgroup, taskset or a SLURM node with
    CPU binding grants), and no more than SLURM granted its task (SLURM_CPUS_PER_TASK): a cluster
    without CPU binding lets a task see, and torch use, the whole node."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    granted = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return max(1, min(cores, int(granted))) if granted.isdigit() and int(granted) > 0 else max(1, cores)
