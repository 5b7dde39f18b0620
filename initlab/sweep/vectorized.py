"""The vectorized launcher: a multirun's compatible jobs trained together as stacked models.

`hydra/launcher=vectorized` (the class Hydra loads and its ConfigStore entry are in
hydra_plugins/initlab_vectorized). Jobs that share an architecture and training schedule and
differ only in init, learning rate, optimizer hyper-parameters or seed are grouped
(group.group_key) and each group trains as one StackedMLP. As soon as a group finishes, each of
its jobs gets its job folder with the files Hydra's run_job writes (job_folders.write_member:
.hydra/, the log file, the callbacks) and the task writes that member's records with the
ordinary runner's code: resume, diagnosis and the report work unchanged; the files go to disk on
a background thread (file_writes), all of them before the next group trains. The jobs' configs
come from job_configs.SweepConfigs, one composition per distinct set of group choices.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf

from initlab import loggers

from initlab.store import records
from initlab.config.check import ConfigError, check, check_launcher as check_launcher_values, validate
from initlab.build.data import DataError, shapes as data_shapes
from initlab.stacked.group import GroupTraining, group_key
from initlab.stacked.models import check_reproduced
from initlab.stacked.sizes import CPU_TENSOR_BYTES, available_bytes, member_bytes, member_tensor_bytes
from initlab.store.file_writes import BackgroundWrites
from initlab.sweep.job_folders import HydraYaml, JobLogs, begin_job, watches_jobs, write_member
from initlab.sweep.member_writes import MemberWriters, Recipes, default_workers
from initlab.sweep.job_configs import SweepConfigs
from initlab.build.environment import check_device, resolve_device
from initlab.train.runner import failed_outcome, finished_before
from initlab.sweep.fewer_collections import COLLECTIONS
from initlab.sweep.jobs import Job, chunks, job_ranges, numbered, writer
from initlab.train.loop import Outcome

log = logging.getLogger("initlab")
# Held while a group's models are drawn: they come from the global RNG, seeded per member, so two
# workers (several devices) must not draw at once.
BUILDING = threading.Lock()


def check_launcher(launcher) -> None:
    """hydra.launcher's own values (config.check_launcher), and the devices it names on this machine."""
    check_launcher_values(launcher)
    for i, device in enumerate(getattr(launcher, "devices", None) or []):
        check_device(str(device), f"hydra.launcher.devices[{i}]")


class VectorizedSweep:
    """One batch of initlab jobs through the vectorized launcher."""

    def __init__(self, launcher) -> None:
        try:
            check_launcher(launcher)
        except ConfigError as e:  # before anything is planned, as a wrong task value stops a sweep
            print(f"initlab: {e}", file=sys.stderr)
            sys.exit(2)
        self.launcher, self.config = launcher, launcher.config
        self.yaml = HydraYaml()  # the jobs' .hydra files differ in a few lines: the rest is rendered once
        # False where the loader keeps no config either (the cluster launchers' submitting process,
        # SweepConfigs.validate_only): a job's config goes as soon as its settings and folder are
        # planned, and is made again (config_of) only where this process writes the job's folder: a
        # submitting process held every job's config, 2.3 GB for a 10,000-job study.
        loader = launcher.hydra_context.config_loader
        self.keep_configs = not (isinstance(loader, SweepConfigs) and loader.validate_only)
        workers = getattr(launcher, "write_workers", None)
        self.writers = MemberWriters(default_workers() if workers is None else workers)

    def _jobs(self, job_overrides: Sequence[Sequence[str]], nums: Sequence[int]) -> list[Job]:
        jobs = []
        loader = self.launcher.hydra_context.config_loader
        for num, overrides in zip(nums, job_overrides):
            # A launcher that keeps no job config plans a derivable job on its signature's scratch copy.
            config = loader.scratch(self.config, list(overrides)) \
                if not self.keep_configs and isinstance(loader, SweepConfigs) else None
            config = self._config(overrides, num) if config is None else numbered(config, num)
            try:  # the task's own config, as run() sees it (validate leaves the hydra node out)
                known = loader.settings(config) if isinstance(loader, SweepConfigs) else None
                settings = validate(config) if known is None else check(known)
                check_device(settings["trainer"]["device"])
                check_reproduced(settings["optim"])
            except ConfigError as e:  # fail fast, as a single run does
                print(f"initlab: {e}", file=sys.stderr)
                sys.exit(2)
            # The job's folder as run_job names it (os.path.join of the two, unnormalized).
            subdir = loader.subdir(config) if isinstance(loader, SweepConfigs) else None
            if subdir is None:
                subdir = str(OmegaConf.select(config, "hydra.sweep.subdir"))
            output_dir = os.path.join(str(config.hydra.sweep.dir), subdir)
            recipe = loader.recipe(config) if isinstance(loader, SweepConfigs) else None
            if not self.keep_configs:
                if isinstance(loader, SweepConfigs):
                    loader.forget(config)
                config = None
            jobs.append(Job(num, list(overrides), config, settings, output_dir, recipe))
        return jobs

    def _config(self, overrides: Sequence[str], num: int) -> DictConfig:
        """A job's config, numbered: from SweepConfigs when the launcher installed it, else Hydra's loader."""
        loader = self.launcher.hydra_context.config_loader
        load = loader.for_launch if isinstance(loader, SweepConfigs) else loader.load_sweep_config
        return numbered(load(self.config, list(overrides)), num)

    def _group_size(self, job: Job) -> int:
        """Members per stacked group: as set, or as many as the free memory of the job's device holds
        and, on the CPU, as many as keep each step's tensors below CPU_TENSOR_BYTES."""
        if self.launcher.max_group_size:
            return self.launcher.max_group_size
        device = resolve_device(job.settings["trainer"]["device"])
        shapes = data_shapes(job.settings["data"])  # the data's own, not MNIST's 784 and 10
        size = int(available_bytes(device) * self.launcher.memory_fraction // member_bytes(job.settings, *shapes))
        if device.type == "cpu":
            size = min(size, CPU_TENSOR_BYTES // member_tensor_bytes(job.settings, *shapes))
        return max(1, size)

    def _train(self, group: list[Job], device: Optional[torch.device] = None) -> list[tuple[Outcome, datetime, float, torch.device]]:
        """Train one group: for each member its MemberRecords (a failed Outcome if the group raised), start,
        time share, device."""
        device = device or resolve_device(group[0].settings["trainer"]["device"])
        loggers.prepare(group[0].settings.get("logger"), OmegaConf.select(group[0].config, "hydra.runtime.choices.experiment"))
        started_at, started = datetime.now(timezone.utc), time.perf_counter()
        try:
            with BUILDING:  # models are drawn from the global RNG: one group at a time (workers.py)
                training = GroupTraining([j.settings for j in group], device)
            training.fit()
            # Each member's tables are made where its folder is written (MemberRecords.outcome): in the
            # write processes when there are some.
            outcomes = [training.records(k) for k in range(len(group))]
        except DataError as e:
            print(f"initlab: {e}", file=sys.stderr)
            sys.exit(2)
        except Exception as e:  # out of memory, a bug: each member is recorded as failed, the sweep goes on
            outcomes = [failed_outcome(j.settings, None, e, j.folder) for j in group]
        share = (time.perf_counter() - started) / len(group)  # the group's wall time, split evenly
        return [(outcome, started_at, share, device) for outcome in outcomes]

    def _run_job(self, job: Job, task) -> JobReturn:
        """Hydra makes the job folder (.hydra/, the log file) as usual and runs `task` in it."""
        log.info(f"\t#{job.num} : {' '.join(filter_overrides(job.overrides))}")
        result = run_job(hydra_context=self.launcher.hydra_context, task_function=task, config=job.config,
                         job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return result

    def start(self, job_overrides: Sequence[Sequence[str]], nums: Sequence[int]) -> tuple[list[Job], list[list[Job]]]:
        """The batch's jobs, and the plan: the stacked groups of those not finished yet."""
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        jobs = self._jobs(job_overrides, nums)
        todo = [j for j in jobs if j.settings["rerun"] or finished_before(j.folder, j.settings) is None]
        groups: dict[str, list[Job]] = {}
        for job in todo:
            groups.setdefault(group_key(job.settings), []).append(job)
        plan = [part for members in groups.values() for part in chunks(members, self._group_size(members[0]))]
        COLLECTIONS.settle()  # the jobs' configs live to the end of the sweep
        return jobs, plan

    def run(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.run_jobs(job_overrides, range(initial_job_idx, initial_job_idx + len(job_overrides)))

    def run_jobs(self, job_overrides: Sequence[Sequence[str]], nums: Sequence[int]) -> list[JobReturn]:
        """Train the jobs numbered `nums` (their overrides) and write their folders; their JobReturns."""
        jobs, plan = self.start(job_overrides, nums)
        log.info(f"Vectorized: {self.plan_words(jobs, plan)}")
        self.start_writers(jobs, plan)
        try:
            returns = self.write_finished(jobs, plan)
            devices = self.devices(jobs[0]) if plan else []
            if len(devices) > 1:
                from initlab.sweep.workers import run_on_devices

                elsewhere = run_on_devices(self, plan, devices, returns)
            else:
                elsewhere = [job for n, planned in enumerate(plan, 1) for job in self.run_group(n, len(plan), planned, returns)]
            self.finish_elsewhere(elsewhere, returns)
        finally:
            self.writers.close()
        return [returns[j.num] for j in jobs]

    def release_configs(self, jobs: list[Job]) -> None:
        """Let jobs' configs go until `config_of` makes them again (~150 KB each: a process that
        submits 10,000 jobs elsewhere need not hold them while they run)."""
        loader = self.launcher.hydra_context.config_loader
        for job in jobs:
            if isinstance(loader, SweepConfigs):
                loader.forget(job.config)
            job.config = None
        COLLECTIONS.collect()  # they were frozen with the plan (settle): freed only by a collection

    def config_of(self, job: Job) -> DictConfig:
        """A job's config, made again (as _jobs made it) if it was released."""
        if job.config is None:
            job.config = self._config(job.overrides, job.num)
        return job.config

    def start_writers(self, jobs: list[Job], plan: list[list[Job]]) -> None:
        """Start the processes that write job folders (member_writes.py) now, while groups train, when
        some batch of folders will be large enough for them and no callback watches the jobs."""
        largest = max([len(jobs) - sum(len(p) for p in plan)] + [len(p) for p in plan])
        if self.writers.worth(largest) and not watches_jobs(self.launcher.hydra_context.callbacks):
            self.writers.start()

    @staticmethod
    def plan_words(jobs: list[Job], plan: list[list[Job]], elsewhere: int = 0) -> str:
        """What the sweep will do; `elsewhere`: jobs an earlier submission's groups still train (in_flight.py)."""
        todo = sum(len(p) for p in plan)
        groups = f" in {len(plan)} stacked group(s) of {', '.join(str(len(p)) for p in plan)}" if plan else ""
        return (f"{len(jobs)} jobs, {len(jobs) - todo - elsewhere} already finished, "
                f"{f'{elsewhere} still training on the cluster, ' if elsewhere else ''}{todo} to train{groups}")

    def write_finished(self, jobs: list[Job], plan: list[list[Job]]) -> dict[int, JobReturn]:
        """The folders of the jobs an earlier attempt finished (nothing trains): the JobReturns so far."""
        returns: dict[int, JobReturn] = {}
        pending = {j.num for p in plan for j in p}
        finished = [job for job in jobs if job.num not in pending]
        for job in finished:
            self.config_of(job)
        self._write_members([(job, None) for job in finished], returns)
        return returns

    def devices(self, job: Job) -> list[torch.device]:
        """The devices groups train on at once: `hydra.launcher.devices` when set, else every visible
        GPU when trainer.device is auto or cuda (one worker each), else the job's one device."""
        chosen = getattr(self.launcher, "devices", None)
        if chosen:
            return [resolve_device(str(d)) for d in chosen]
        wanted = job.settings["trainer"]["device"]
        if wanted in ("auto", "cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 1:
            return [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
        return [resolve_device(wanted)]

    def claim(self, n: int, total: int, planned: list[Job], returns: dict[int, JobReturn]):
        """Lock a planned group's jobs and write those another process finished meanwhile: (the jobs
        to train here, the jobs another process holds now, the locks to release after training)."""
        group, done_meanwhile, busy, locks = self._claim(planned)
        self._write_members([(job, None) for job in done_meanwhile], returns)
        if group:
            log.info(f"group {n}/{total}: {len(group)} members, jobs {job_ranges([j.num for j in group])}"
                     + (f" ({len(busy)} running in another process)" if busy else ""))
        return group, busy, locks

    def run_group(self, n: int, total: int, planned: list[Job], returns: dict[int, JobReturn],
                  device: Optional[torch.device] = None) -> list[Job]:
        """Train one planned group here and write its members' folders; the jobs another process holds."""
        group, busy, locks = self.claim(n, total, planned, returns)
        try:
            if len(group) == 1:  # nothing to stack: the ordinary task, as the basic launcher runs it
                returns[group[0].num] = self._run_job(group[0], self.launcher.task_function)
            elif group:
                # Written now, before the next group trains: a kill loses at most the group in flight,
                # and memory holds one group's records at a time.
                self.write_group(group, self._train(group, device), returns)
        finally:
            for lock in locks:
                lock.release()
        return busy

    def write_group(self, group: list[Job], results: list, returns: dict[int, JobReturn]) -> None:
        self._write_members(list(zip(group, results)), returns)

    def finish_elsewhere(self, elsewhere: list[Job], returns: dict[int, JobReturn]) -> None:
        """Wait for another process's jobs; train here what it left unfinished."""
        for job in elsewhere:
            with records.job_lock(job.folder):
                if not job.settings["rerun"] and finished_before(job.folder, job.settings) is not None:
                    self._write_members([(job, None)], returns)
                else:
                    returns[job.num] = self._run_job(job, self.launcher.task_function)

    def _claim(self, planned: list[Job]) -> tuple[list[Job], list[Job], list[Job], list]:
        """Lock a planned group's jobs: (to train here, finished by another process since the plan,
        held by another process now, the locks taken). A job to train is cleared of an earlier
        attempt's summary: until its records land it counts as unfinished."""
        group, done_meanwhile, busy, locks = [], [], [], []
        for job in planned:
            lock = records.lock_job(job.folder, wait=False)
            if lock is None:
                busy.append(job)
                continue
            locks.append(lock)
            if not job.settings["rerun"] and finished_before(job.folder, job.settings) is not None:
                done_meanwhile.append(job)
            else:
                records.clear_run(job.folder)
                group.append(job)
        return group, done_meanwhile, busy, locks

    def _write_members(self, members: list[tuple[Job, Any]], returns: dict[int, JobReturn]) -> None:
        """The job folders of jobs whose work is done: (job, its result from _train, or None for a job an
        earlier attempt finished). Many at once go to the write workers (member_writes.py)."""
        for job, _ in members:
            log.info(f"\t#{job.num} : {' '.join(filter_overrides(job.overrides))}")
        callbacks = self.launcher.hydra_context.callbacks
        try:
            if self.writers.worth(len(members)) and not watches_jobs(callbacks):
                loader = self.launcher.hydra_context.config_loader
                recipes = Recipes(self.config, loader.bases, loader.groups, loader.recipe) \
                    if isinstance(loader, SweepConfigs) else None
                self.writers.write(members, returns, self._job_return, lambda some: self._write_here(some, returns),
                                   recipes)
            else:
                self._write_here(members, returns)
        except OSError as e:  # a full disk: the writes after the failed one were skipped
            log.error(f"records not written ({e.strerror or e}{f': {e.filename}' if e.filename else ''}): the "
                      f"jobs of this group without a summary.json stay unfinished and run again on resume")
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)

    def _write_here(self, members: list[tuple[Job, Any]], returns: dict[int, JobReturn]) -> None:
        """Write members' folders in this process (Hydra's steps, job_folders.write_member)."""
        logs, callbacks = JobLogs(), self.launcher.hydra_context.callbacks
        loader = self.launcher.hydra_context.config_loader
        plain = loader.plain if isinstance(loader, SweepConfigs) else None
        # The files go to disk on a background thread while the next member's are prepared, all
        # of them before the next group trains; not when a callback may read them at job end.
        with nullcontext() if watches_jobs(callbacks) else BackgroundWrites():
            for job, result in members:
                returns[job.num] = write_member(job.config, writer(job, result), callbacks, logs, self.yaml,
                                                output_dir=job.output_dir, plain=plain)
                if plain is not None:
                    loader.forget(job.config)

    def _job_return(self, job: Job) -> JobReturn:
        """The JobReturn of a member a write worker wrote, as write_member makes it here."""
        previous = HydraConfig.instance().cfg
        try:
            return begin_job(job.config, job.output_dir)[0]
        finally:
            HydraConfig.instance().cfg = previous
            loader = self.launcher.hydra_context.config_loader
            if isinstance(loader, SweepConfigs):
                loader.forget(job.config)
