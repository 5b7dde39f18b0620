"""Stacked groups as submitit jobs: `hydra/launcher=vectorized_slurm` and `vectorized_submitit_local`.

The submitting process plans the sweep as the in-process vectorized launcher does (jobs finished
by an earlier attempt are skipped, the rest grouped and cut to max_group_size) and submits each
group as one submitit job, all of them as one job array. A job (cluster_job.py's GroupTask, on its
node) trains its group with the in-process launcher's code, so each member's folder holds exactly the files
the in-process launcher writes, on its node's GPUs (several: one worker each, workers.py). When a
job dies without writing its members (timed out, preempted past its requeues, cancelled, out of
memory), the submitting process records each unwritten member as `failed`, naming the job and
what submitit says, so the sweep's end counts them and exits 1, and a resumed sweep (the same
command with hydra.sweep.dir) trains them again: resume is by config identity, as everywhere.
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from initlab.sweep import in_flight
from initlab.train.runner import failed_outcome, finished_before
from initlab.sweep.fewer_collections import COLLECTIONS
from initlab.sweep.vectorized import VectorizedSweep
from initlab.sweep.cluster_job import GroupTask, LightReturns

log = logging.getLogger("initlab")


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

