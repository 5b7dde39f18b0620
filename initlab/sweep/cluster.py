"""Stacked groups as submitit jobs: `hydra/launcher=vectorized_slurm` and `vectorized_submitit_local`.

The submitting process plans the sweep as the in-process vectorized launcher does (jobs finished
by an earlier attempt are skipped, the rest grouped and cut to max_group_size) and submits each
group as one submitit job, all of them as one job array. A job (GroupTask, on its node) trains
its group with the in-process launcher's code, so each member's folder holds exactly the files
the in-process launcher writes, on its node's GPUs (several: one worker each, workers.py). When a
job dies without writing its members (timed out, preempted past its requeues, cancelled, out of
memory), the submitting process records each unwritten member as `failed`, naming the job and
what submitit says, so the sweep's end counts them and exits 1, and a resumed sweep (the same
command with hydra.sweep.dir) trains them again: resume is by config identity, as everywhere.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from initlab.sweep import in_flight
from initlab.sweep.job_configs import SweepConfigs
from initlab.train.runner import failed_outcome, finished_before
from initlab.sweep.fewer_collections import COLLECTIONS
from initlab.sweep.vectorized import VectorizedSweep

log = logging.getLogger("initlab")


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


def executor_for(launcher):
    """A submitit executor with the launcher's parameters, mapped as Hydra's submitit plugin maps them."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    kind = launcher._EXECUTOR
    params = dict(launcher.params)
    if kind == "local":
        # submitit's LocalExecutor itself: it takes a timeout in fractions of a minute and a signal
        # delay, which its AutoExecutor form does not pass on; cpus and memory are not limited locally.
        # max_num_timeout is its constructor's, as AutoExecutor takes slurm's below.
        executor = submitit.LocalExecutor(folder=params["submitit_folder"],
                                          max_num_timeout=params.get("max_num_timeout", 0))
        executor.update_parameters(**{k: params[k] for k in ("timeout_min", "signal_delay_s", "gpus_per_node",
                                                             "tasks_per_node", "setup") if params.get(k) is not None})
        return executor
    if kind == "slurm" and shutil.which("sbatch") is None:  # (submitit: "Could not detect srun", a traceback)
        raise FileNotFoundError(errno.ENOENT, "not found on PATH", "sbatch")
    init = {"folder": params.pop("submitit_folder")}
    if "max_num_timeout" in params:
        init[f"{kind}_max_num_timeout"] = params.pop("max_num_timeout")
    executor = submitit.AutoExecutor(cluster=kind, **init)
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in shared else f"{kind}_{k}": v for k, v in params.items()})
    return executor


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Plan the batch, submit its groups, wait for them; the JobReturns in the batch's order."""
    COLLECTIONS.start()  # (started by setup() for the first batch; see entry.launch)
    sweep = VectorizedSweep(launcher)
    try:
        jobs, plan = sweep.start(job_overrides, range(initial_job_idx, initial_job_idx + len(job_overrides)))
        plan, waiting = _leave_out_groups_still_on_the_cluster(launcher, plan)
        elsewhere = sum(map(len, waiting.values()))
        log.info(f"Vectorized on submitit ({launcher._EXECUTOR}): {sweep.plan_words(jobs, plan, elsewhere)}"
                 + (", one submitit job each" if plan else ""))
        returns = LightReturns()
        for num, ret in sweep.write_finished(jobs, plan + list(waiting.values())).items():
            returns[num] = ret
        if waiting:
            log.info(f"{elsewhere} job(s) are being trained by {len(waiting)} task(s) that an earlier submission "
                     f"of this sweep left on the cluster ({', '.join(waiting)}): waiting for them, not training "
                     f"those jobs again")
        submitted = _submit(launcher, sweep, plan, returns) if plan else []
        with _interrupted_in_one_line(launcher, submitted, waiting):
            if submitted:
                _collect(sweep, plan, submitted, returns)
            in_flight.wait_for_them(sweep, waiting, launcher.params["submitit_folder"], returns, _record_lost)
        return [returns[j.num] for j in jobs]
    finally:
        sweep.writers.close()  # the write workers of the folders written here
        COLLECTIONS.stop()


def _submit(launcher, sweep: VectorizedSweep, plan: list, returns: dict[int, JobReturn]) -> list:
    """Submit the plan's groups. SLURM: one job array, its jobs returned for _collect. Local: a window of
    parallel_groups at a time, each window collected before the next (nothing is returned)."""
    with _refused_submission_in_one_line(launcher):
        executor = executor_for(launcher)
    state = Singleton.get_state()
    at_once = launcher.parallel_groups if launcher._EXECUTOR == "local" else len(plan)
    tasks = [GroupTask(launcher, group, state, slot=i % max(1, at_once)) for i, group in enumerate(plan)]
    submitted: list = []
    for start in range(0, len(tasks), max(1, at_once)):  # local: a window at a time; SLURM: one array
        with _refused_submission_in_one_line(launcher):
            with executor.batch():
                wave = [executor.submit(task) for task in tasks[start:start + max(1, at_once)]]
        log.info(f"submitted {len(wave)} group(s): submitit job(s) {', '.join(j.job_id for j in wave)} "
                 f"(logs in {launcher.params['submitit_folder']})")
        if launcher._EXECUTOR == "slurm":  # what each task trains, for a resume while it is still queued
            for job, group in zip(wave, plan[start:start + len(wave)]):
                in_flight.record_members(job, group)
        if start == 0:  # their jobs make them again; freeing them (~1 ms each) overlaps the first groups
            sweep.release_configs([j for group in plan for j in group])
        if launcher._EXECUTOR == "local":
            _collect(sweep, plan[start:start + len(wave)], wave, returns)
        else:
            submitted += wave
    return submitted


# what a cluster may refuse a job for, as hydra.launcher names them
ASKED_FOR = ("partition", "account", "qos", "constraint", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min")


@contextmanager
def _refused_submission_in_one_line(launcher):
    """sbatch refusing the groups (a partition the cluster lacks, a GPU request a CPU partition
    cannot grant, more memory than a node has) or missing: one readable line and exit 2, as for a
    wrong config value, instead of submitit's traceback. Nothing was submitted."""
    from submitit.core.utils import FailedJobError

    try:
        yield
    except FailedJobError as e:  # (the command's stderr)
        said = "; ".join(line.strip() for line in str(e).strip().splitlines() if line.strip()) or "no reason given"
        asked = ", ".join(f"{k}={launcher.params[k]}" for k in ASKED_FOR if launcher.params.get(k) is not None)
        print(f"initlab: the cluster refused the groups' job array ({said}); hydra.launcher asked for {asked}: "
              f"set those to what your cluster offers (sinfo lists its partitions). Nothing was submitted.",
              file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as e:  # no SLURM client commands here
        print(f"initlab: hydra/launcher=vectorized_slurm needs SLURM's sbatch on this machine ({e.strerror}: "
              f"{e.filename}); submit from a login node, or run the groups here with "
              f"hydra/launcher=vectorized_submitit_local. Nothing was submitted.", file=sys.stderr)
        sys.exit(2)


@contextmanager
def _interrupted_in_one_line(launcher, submitted: list, waiting: dict):
    """Ctrl-C while waiting for SLURM: the tasks go on (submitit does not cancel them) and write their
    members. Say so, and how to go on or stop them, in one line instead of a traceback; exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        arrays = sorted({job.job_id.split("_")[0] for job in submitted} | {task.split("_")[0] for task in waiting})
        if launcher._EXECUTOR != "slurm" or not arrays:
            raise
        print(f"\ninitlab: interrupted. The groups on the cluster go on and write their members (job(s) "
              f"{', '.join(arrays)}): run the same command again to wait for them and finish the sweep, or "
              f"scancel {' '.join(arrays)} to stop them.", file=sys.stderr)
        sys.exit(130)


def _leave_out_groups_still_on_the_cluster(launcher, plan: list) -> tuple[list, dict[str, list]]:
    """The plan without the jobs that tasks of an earlier submission still queued or running on the
    cluster will write (in_flight.py), and those jobs by task id."""
    elsewhere = in_flight.still_on_the_cluster(launcher.params["submitit_folder"]) \
        if launcher._EXECUTOR == "slurm" and plan else {}  # (all finished: squeue need not be asked)
    if not elsewhere:
        return plan, {}
    waiting: dict[str, list] = {}
    for job in (j for group in plan for j in group if j.folder.name in elsewhere):
        waiting.setdefault(elsewhere[job.folder.name], []).append(job)
    return [kept for group in plan if (kept := [j for j in group if j.folder.name not in elsewhere])], waiting


def _collect(sweep: VectorizedSweep, plan: list, submitted: list, returns: dict[int, JobReturn]) -> None:
    """Each group's JobReturns as its job ends; a job that died gets its unwritten members recorded."""
    from submitit.local.local import LocalJob

    groups = {id(job): group for group, job in zip(plan, submitted)}
    # Local: submitit's wait() looks once a second, ~0.5 s lost per group here. SLURM: its wait() asks
    # sacct ever less often (until_done says why that matters).
    local = any(isinstance(job, LocalJob) for job in submitted)
    for job in in_flight.as_they_end(submitted, poll_s=0.05 if local else 1.0):
        group = groups[id(job)]
        try:
            for num, result in job.results()[0]:
                returns[num] = result
            COLLECTIONS.settle()  # (nothing trains in this process) the JobReturns live to the end
        except Exception as e:  # timed out, preempted past its requeues, cancelled, killed, out of memory
            log.error(f"submitit job {job.job_id} ended without its group's records ({_why(e)}); "
                      f"its unwritten members are recorded as failed and train again when the sweep is resumed")
            _record_lost(sweep, group, job, e, returns)


def _why(error: BaseException) -> str:
    """Why a job ended without its result, in one line: the error's first line, the state the
    cluster gave the job where submitit names it further down (CANCELLED, TIMEOUT, OUT_OF_MEMORY,
    NODE_FAIL, ...: what a user looks for first), srun's word on how a task ended where the error
    stream has it (a signal that came before submitit's handler was in place: state FAILED alone
    says nothing), and the error a failed job's function raised."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    state = re.search(r"\(state: [^)\n]*\)", text)
    if state and state.group(0) not in first:
        first = f"{first} {state.group(0)}"
    ended = re.findall(r"^srun: error: (?:\S+: )?(task \d+: .+?)\s*$", text, re.M)
    if ended:
        first = f"{first}, srun: {ended[-1]}"
    # a job whose function raised (FailedJobError): its traceback's last line, the error itself
    trace = re.search(r"Traceback \(most recent call last\):\n(.*?)(?:\n-{5,}|$)", text, re.S)
    lines = trace.group(1).splitlines() if trace else []
    raised = [line.strip() for line in lines if line.strip() and not line[0].isspace()]
    if raised:
        first = f"{first.rstrip(':')}: {raised[-1]}"
    return f"{type(error).__name__}: {first}".rstrip(": ")


def _record_lost(sweep: VectorizedSweep, group: list, job, error: BaseException, returns: dict[int, JobReturn]) -> None:
    lost = RuntimeError(f"submitit job {job.job_id} ended without writing this run's records: {_why(error)}")
    for member in group:
        sweep.config_of(member)  # (released when the group was submitted)
        if finished_before(member.folder, member.settings) is not None:  # written before the job died
            sweep._write_members([(member, None)], returns)
            continue
        try:
            raise lost from error
        except RuntimeError as e:  # failed_outcome writes error.txt from the exception being handled
            outcome = failed_outcome(member.settings, None, e, member.folder)
        # device None: summary.json says null, as the run never reported where it ran
        sweep.write_group([member], [(outcome, datetime.now(timezone.utc), 0.0, None)], returns)

