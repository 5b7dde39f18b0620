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

import logging
import time
from datetime import datetime, timezone
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from initlab.sweep_configs import SweepConfigs
from initlab.train import failed_outcome, finished_before
from initlab.vectorized import COLLECTIONS, VectorizedSweep

log = logging.getLogger("initlab")


class GroupTask:
    """What one submitit job runs: the vectorized launcher's code on its group of jobs.

    The job makes its members' configs again from their overrides. With the bases the submitting
    process derived them from (sweep_configs.SweepConfigs), it derives them the same way, a few
    milliseconds each; without, Hydra composes each in full (~80 ms: 20 s for a group of 256).
    """

    def __init__(self, launcher, group: list, singleton_state: dict) -> None:
        self.launcher, self.singleton_state = launcher, singleton_state
        self.overrides, self.nums = [j.overrides for j in group], [j.num for j in group]
        loader = launcher.hydra_context.config_loader
        self.bases = loader.bases_for([j.config for j in group]) if isinstance(loader, SweepConfigs) else {}

    def __call__(self) -> list[tuple[int, JobReturn]]:
        Singleton.set_state(self.singleton_state)
        loader = self.launcher.hydra_context.config_loader
        if isinstance(loader, SweepConfigs):
            loader.add_bases(self.bases)
        COLLECTIONS.start()
        try:
            returns = VectorizedSweep(self.launcher).run_jobs(self.overrides, self.nums)
        finally:
            COLLECTIONS.stop()
        return list(zip(self.nums, returns))

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Preempted (or timed out, with max_num_timeout > 0): submitit requeues the same group; its
        members written before the signal are skipped by resume, the rest train again."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def executor_for(launcher):
    """A submitit executor with the launcher's parameters, mapped as Hydra's submitit plugin maps them."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    kind = launcher._EXECUTOR
    params = dict(launcher.params)
    if kind == "local":
        # submitit's LocalExecutor itself: it takes a timeout in fractions of a minute and a signal
        # delay, which its AutoExecutor form does not pass on; cpus and memory are not limited locally.
        executor = submitit.LocalExecutor(folder=params["submitit_folder"])
        executor.update_parameters(**{k: params[k] for k in ("timeout_min", "signal_delay_s", "gpus_per_node",
                                                             "tasks_per_node", "setup") if params.get(k) is not None})
        return executor
    init = {"folder": params.pop("submitit_folder")}
    if "max_num_timeout" in params:
        init[f"{kind}_max_num_timeout"] = params.pop("max_num_timeout")
    executor = submitit.AutoExecutor(cluster=kind, **init)
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in shared else f"{kind}_{k}": v for k, v in params.items()})
    return executor


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Plan the batch, submit its groups, wait for them; the JobReturns in the batch's order."""
    COLLECTIONS.start()  # (started by setup() for the first batch; see vectorized.launch)
    sweep = VectorizedSweep(launcher)
    try:
        jobs, plan = sweep.start(job_overrides, range(initial_job_idx, initial_job_idx + len(job_overrides)))
        log.info(f"Vectorized on submitit ({launcher._EXECUTOR}): {sweep.plan_words(jobs, plan)}, one submitit job each")
        returns = sweep.write_finished(jobs, plan)
        if not plan:
            return [returns[j.num] for j in jobs]
        executor = executor_for(launcher)
        state = Singleton.get_state()
        tasks = [GroupTask(launcher, group, state) for group in plan]
        at_once = launcher.parallel_groups if launcher._EXECUTOR == "local" else len(tasks)
        submitted: list = []
        for start in range(0, len(tasks), max(1, at_once)):  # local: a window at a time; SLURM: one array
            with executor.batch():
                wave = [executor.submit(task) for task in tasks[start:start + max(1, at_once)]]
            log.info(f"submitted {len(wave)} group(s): submitit job(s) {', '.join(j.job_id for j in wave)} "
                     f"(logs in {launcher.params['submitit_folder']})")
            if start == 0:  # their jobs make them again; freeing them (~1 ms each) overlaps the first groups
                sweep.release_configs([j for group in plan for j in group])
            if launcher._EXECUTOR == "local":
                _collect(sweep, plan[start:start + len(wave)], wave, returns)
            else:
                submitted += wave
        if submitted:
            _collect(sweep, plan, submitted, returns)
        return [returns[j.num] for j in jobs]
    finally:
        sweep.writers.close()  # the write workers of the folders written here
        COLLECTIONS.stop()


def _collect(sweep: VectorizedSweep, plan: list, submitted: list, returns: dict[int, JobReturn]) -> None:
    """Each group's JobReturns as its job ends; a job that died gets its unwritten members recorded."""
    from submitit.local.local import LocalJob

    for group, job in zip(plan, submitted):
        try:
            if isinstance(job, LocalJob):  # submitit's wait() looks once a second: ~0.5 s lost per group here
                while not job.done():
                    time.sleep(0.05)
            for num, result in job.results()[0]:
                returns[num] = result
            COLLECTIONS.settle()  # (nothing trains in this process) the JobReturns live to the end
        except Exception as e:  # timed out, preempted past its requeues, cancelled, killed, out of memory
            what = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log.error(f"submitit job {job.job_id} ended without its group's records ({type(e).__name__}: {what}); "
                      f"its unwritten members are recorded as failed and train again when the sweep is resumed")
            _record_lost(sweep, group, job, e, returns)


def _record_lost(sweep: VectorizedSweep, group: list, job, error: BaseException, returns: dict[int, JobReturn]) -> None:
    lost = RuntimeError(f"submitit job {job.job_id} ended without writing this run's records: "
                        f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}")
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

