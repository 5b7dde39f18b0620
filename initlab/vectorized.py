"""The vectorized launcher: a multirun's compatible jobs trained together as stacked models.

`hydra/launcher=vectorized` (conf/hydra/launcher/vectorized.yaml; the class Hydra loads is in
hydra_plugins/initlab_vectorized). Jobs that share an architecture and training schedule and
differ only in init, learning rate, optimizer hyper-parameters or seed are grouped
(group.group_key) and each group trains as one StackedMLP. Then every job still goes through
Hydra's own run_job, which makes its job folder (.hydra/, the log file) exactly as for the
basic launcher, and the task writes that member's records with the ordinary runner's code:
resume, diagnosis and the report work unchanged.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

import torch
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, open_dict

from initlab import records
from initlab.config import ConfigError, validate
from initlab.data import DataError
from initlab.group import GroupTraining, group_key
from initlab.train import failed_outcome, finished_before, job_context, log_skipped, objective, record, resolve_device
from initlab.training import Outcome

log = logging.getLogger("initlab")


@dataclass
class Job:
    num: int
    overrides: list[str]
    config: DictConfig
    settings: dict
    folder: Path
    outcome: Optional[Outcome] = None
    started_at: Optional[datetime] = None
    wall_time_s: float = 0.0
    device: Optional[torch.device] = None


def member_bytes(settings: dict, in_features: int = 784, classes: int = 10) -> int:
    """A generous estimate of the memory one member needs while its group trains."""
    m, batch = settings["model"], settings["trainer"]["batch_size"]
    widths = [m["width"]] * m["depth"] + [classes]
    fans = [in_features] + widths[:-1]
    params = sum(o * i + o for o, i in zip(widths, fans))
    # weights, grads, two optimizer buffers, the update-ratio snapshot; per-step activations and their grads.
    return 4 * (5 * params + batch * (in_features + 4 * sum(widths)))


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def chunks(jobs: list[Job], size: int) -> list[list[Job]]:
    return [jobs[i:i + size] for i in range(0, len(jobs), size)]


class VectorizedLauncher(Launcher):
    """Hydra launcher that trains compatible jobs as one stacked model (see module docstring)."""

    def __init__(self, max_group_size: Optional[int] = None, memory_fraction: float = 0.5) -> None:
        self.max_group_size, self.memory_fraction = max_group_size, memory_fraction
        self.config: Optional[DictConfig] = None
        self.hydra_context = None
        self.task_function = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _jobs(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Job]:
        jobs = []
        for i, overrides in enumerate(job_overrides):
            num = initial_job_idx + i
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id, config.hydra.job.num = num, num
            try:  # the task's own config, as run() sees it: without the hydra node
                settings = validate(OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]))
            except ConfigError as e:  # fail fast, as a single run does
                print(f"initlab: {e}", file=sys.stderr)
                sys.exit(2)
            folder = Path(str(config.hydra.sweep.dir)) / str(OmegaConf.select(config, "hydra.sweep.subdir"))
            jobs.append(Job(num, list(overrides), config, settings, folder))
        return jobs

    def _group_size(self, job: Job) -> int:
        """Members per stacked group: as set, or as many as the free memory of the job's device holds."""
        if self.max_group_size:
            return self.max_group_size
        budget = available_bytes(resolve_device(job.settings["trainer"]["device"])) * self.memory_fraction
        return max(1, int(budget // member_bytes(job.settings)))

    def _train(self, group: list[Job]) -> None:
        """Train one group; every member gets its Outcome (a failed one if the group raised)."""
        device = resolve_device(group[0].settings["trainer"]["device"])
        started_at, started = datetime.now(timezone.utc), time.perf_counter()
        try:
            training = GroupTraining([j.settings for j in group], device)
            training.fit()
            outcomes = [training.outcome(k) for k in range(len(group))]
        except DataError as e:
            print(f"initlab: {e}", file=sys.stderr)
            sys.exit(2)
        except Exception as e:  # out of memory, a bug: each member is recorded as failed, the sweep goes on
            outcomes = [failed_outcome(j.settings, None, e, j.folder) for j in group]
        share = (time.perf_counter() - started) / len(group)  # the group's wall time, split evenly
        for job, outcome in zip(group, outcomes):
            job.outcome, job.started_at, job.wall_time_s, job.device = outcome, started_at, share, device

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        jobs = self._jobs(job_overrides, initial_job_idx)
        todo = [j for j in jobs if j.settings["rerun"] or finished_before(j.folder, j.settings) is None]
        for job in todo:
            records.clear_run(job.folder)  # until its records land, the job counts as unfinished
        groups: dict[str, list[Job]] = {}
        for job in todo:
            groups.setdefault(group_key(job.settings), []).append(job)
        plan = [part for members in groups.values() for part in chunks(members, self._group_size(members[0]))]
        log.info(f"Vectorized: {len(jobs)} jobs, {len(jobs) - len(todo)} already finished, "
                 f"{len(todo)} to train in {len(plan)} stacked group(s) of {', '.join(str(len(p)) for p in plan) or '0'}")
        for n, group in enumerate(plan, 1):
            log.info(f"group {n}/{len(plan)}: {len(group)} members, jobs #{', #'.join(str(j.num) for j in group)}")
            self._train(group)
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        returns = []
        for job in jobs:  # Hydra makes each job folder as usual; the task only writes the member's records
            log.info(f"\t#{job.num} : {' '.join(filter_overrides(job.overrides))}")
            returns.append(run_job(hydra_context=self.hydra_context, task_function=self._writer(job),
                                   config=job.config, job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns

    @staticmethod
    def _writer(job: Job):
        def write(cfg: DictConfig) -> float:
            context = job_context(None)
            if job.outcome is None:  # finished in an earlier attempt
                result = finished_before(context.folder, job.settings)
                log_skipped(result)
            else:
                result = record(context, job.settings, job.device, job.started_at, job.wall_time_s, job.outcome)
            return objective(result)
        return write
