"""What one cluster job runs: a stacked group that cluster.py submitted, on the cores the job was granted.

The group trains with the in-process vectorized launcher's code; submitit's end-of-job error is carried
out of any handler it lands in, and the JobReturns go back light to the submitting process.
submitit pickles GroupTask by this module's path: a job runs this module as the version of initlab
installed on its node has it.
"""

from __future__ import annotations

import os
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn

from initlab.sweep.fewer_collections import COLLECTIONS
from initlab.sweep.job_configs import SweepConfigs
from initlab.sweep.vectorized import VectorizedSweep

class GroupTask:
    """What one submitit job runs: the vectorized launcher's code on its group of jobs.

    The job makes its members' configs again from their overrides. With the bases the submitting
    process derived them from (job_configs.SweepConfigs), it derives them the same way, a few
    milliseconds each; without, Hydra composes each in full (~80 ms: 20 s for a group of 256).
    """

    def __init__(self, launcher, group: list, singleton_state: dict, slot: int = 0) -> None:
        self.launcher, self.singleton_state, self.slot = launcher, singleton_state, slot
        self.overrides, self.nums = [j.overrides for j in group], [j.num for j in group]
        loader = launcher.hydra_context.config_loader
        self.bases = loader.bases_of([j.recipe for j in group]) if isinstance(loader, SweepConfigs) else {}

    def __call__(self) -> list[tuple[int, JobReturn]]:
        Singleton.set_state(self.singleton_state)
        take_share_of_cores(self.launcher, self.slot)
        carry_the_end_past_handlers()
        loader = self.launcher.hydra_context.config_loader
        if isinstance(loader, SweepConfigs):
            loader.add_bases(self.bases)
        COLLECTIONS.start()
        try:
            returns = VectorizedSweep(self.launcher).run_jobs(self.overrides, self.nums)
        except JobEnded as ended:  # submitit's own error, for its result file: the submitting process records it
            raise ended.__cause__ from None
        finally:
            COLLECTIONS.stop()
        for ret in returns:  # (the job's callbacks have had them whole) a quarter of the result file
            light(ret)
        return list(zip(self.nums, returns))

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Preempted (or timed out, with max_num_timeout > 0): submitit requeues the same group; its
        members written before the signal are skipped by resume, the rest train again."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def light(ret: JobReturn) -> JobReturn:
    """A JobReturn as the submitting process keeps it to the sweep's end: without hydra_cfg.

    Hydra's sweepers read a JobReturn's return value (and status); the job's Hydra config is in its
    folder (.hydra/hydra.yaml). Unpickled, it was ~173 KB of a JobReturn's ~216 KB (1.7 GB of live
    objects at the end of a 10,000-job submission), and three quarters of a group's result file, which
    the group pickles and the submitting process unpickles: the 10,000-job local study went from 300 to
    273 s. Resident memory hardly moved (2316 -> 2179 MB at the end): planning's peak, whose freed
    memory the JobReturns reuse, sets it. `cfg`, the task's config (~47 KB), stays.
    """
    ret.hydra_cfg = None
    return ret


class LightReturns(dict):
    """Job number -> JobReturn, each kept `light`."""

    def __setitem__(self, num: int, ret: JobReturn) -> None:
        super().__setitem__(num, light(ret))


class JobEnded(BaseException):
    """submitit's "job not requeued" error (a group past its time limit, or preempted with no
    requeue left), carried from its signal handler to GroupTask as a BaseException.

    submitit raises its error inside the signal handler, so it surfaces wherever the main thread
    is, and an `except Exception` there swallows it. A logging handler's emit has one: slurmstepd
    sends SIGCONT with the USR2, submitit's SIGCONT handler logs, and with the USR2 handled inside
    that call, one of two groups on the test cluster logged "--- Logging error ---" and trained on
    until SLURM killed it a minute later. Carried past every such handler, the error ends
    the group's job at once; each member it had not written is recorded as failed, naming it."""


def carry_the_end_past_handlers() -> None:
    """Wrap submitit's preemption/timeout handler (installed before the job's function runs) so that
    the error it raises leaves as JobEnded. Requeueing (sys.exit) is not an Exception; it passes."""
    import signal

    from submitit import JobEnvironment

    sig = JobEnvironment._usr_sig()
    handler = signal.getsignal(sig)
    if not callable(handler) or getattr(handler, "carries_the_end", False):
        return

    def carried(signum, frame):
        try:
            handler(signum, frame)
        except Exception as e:
            raise JobEnded() from e

    carried.carries_the_end = True
    signal.signal(sig, carried)


def take_share_of_cores(launcher, slot: int) -> None:
    """Train on the cores this group's job was granted, not on every core of the machine.

    torch starts one thread per core it can see. Where several groups' processes share a machine
    (the local executor with parallel_groups > 1; a SLURM node that does not bind tasks to their
    CPUs) their threads contend for the cores, and a contended thread pool waits far longer than it
    computes: two groups at once on this 2-core VM trained 6.1 s each with torch's default threads,
    0.9 s with one thread each; through a SLURM node without CPU binding, 36 to 90 times slower than alone.
    So: on the local executor each of the parallel_groups processes is pinned to its own share of
    the cores (its write workers inherit it); on SLURM, torch uses no more threads than
    SLURM_CPUS_PER_TASK (cores.usable_cores). OMP_NUM_THREADS, where set, is the user's choice.
    """
    import torch

    from initlab.cores import usable_cores

    at_once = getattr(launcher, "parallel_groups", 1) if launcher._EXECUTOR == "local" else 1
    if at_once > 1 and hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        share = max(1, len(allowed) // at_once)
        first = (slot * share) % len(allowed)
        os.sched_setaffinity(0, allowed[first:first + share])
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(usable_cores())
