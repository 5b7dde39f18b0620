"""A report's figures drawn in several processes at once.

The figures of a report are independent of each other, and drawing them is matplotlib's Python
(text layout, ticks, PNG encoding): 11 of the 14 s a 1,024-run report took on the 2-core VM, one
figure after another. `draw` hands them to worker processes forked from the one that loaded the
sweep, so a worker starts with the sweep's tables in its memory (copy-on-write) instead of
reading or unpickling them, and hands back only what each figure returns (its path and note).

Forking is safe where nothing else runs in the process: `initlab-report` forks after loading the
runs (the reading threads are done; Arrow re-creates its own thread pools in a child). The report
written at the end of a sweep (hydra/callbacks=report) draws in its own process, one figure after
another: that process may hold a CUDA context, a launcher's threads and their locks. Where fork
does not exist (Windows, and macOS, where it is unsafe), or with one core, the figures are drawn
here too. A worker that dies (out of memory) leaves its figures to this process.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, TypeVar

T = TypeVar("T")

# The figures being drawn: set before the workers fork, so each inherits them (closures over the
# sweep do not pickle, and pickling the sweep would cost more than drawing).
_JOBS: list[Callable[[], object]] = []


def _run(i: int) -> object:
    return _JOBS[i]()


def can_fork() -> bool:
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def draw(jobs: list[Callable[[], T]], workers: int) -> list[T]:
    """Each job's result, in the jobs' order: drawn by up to `workers` forked processes, taking
    the jobs in order (put the slowest first), or here, one after another, with one worker."""
    global _JOBS
    workers = min(workers, len(jobs))
    if workers <= 1 or not can_fork():
        return [job() for job in jobs]
    _JOBS = list(jobs)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_run, i) for i in range(len(jobs))]
            results = []
            for job, future in zip(jobs, futures):
                try:
                    results.append(future.result())
                except BrokenProcessPool:  # a worker died, not the figure's code: draw it here
                    results.append(job())
            return results
    finally:
        _JOBS = []
