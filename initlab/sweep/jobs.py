"""A sweep job as the vectorized launcher carries it, its config numbered as Hydra numbers it, and
the task that writes a trained member's records into its job folder with the ordinary runner's code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, open_dict
from omegaconf.errors import ConfigAttributeError

from initlab.stacked.member_records import MemberRecords
from initlab.train.loop import Outcome
from initlab.train.runner import finished_before, job_context, log_skipped, objective, record


@dataclass
class Job:
    num: int
    overrides: list[str]
    config: Optional[DictConfig]  # None once released (VectorizedSweep.release_configs)
    settings: dict
    output_dir: str  # the job's folder as Hydra's run_job spells it
    recipe: Optional[tuple] = None  # the signature its config derives from (SweepConfigs.recipe), if it does

    @property
    def folder(self) -> Path:
        return Path(self.output_dir)


def numbered(config: DictConfig, num: int) -> DictConfig:
    """A job config with its number in the batch (hydra.job.id and num), as the launcher gives it.

    Both keys are in Hydra's job schema: set without the basic launcher's open_dict, whose walk
    over every node of the config (twice) was a third of the launcher's planning per job."""
    job = config.hydra.job
    try:
        job.id, job.num = num, num
    except ConfigAttributeError:  # a config without them (not one Hydra composed)
        with open_dict(config):
            job.id, job.num = num, num
    return config


def job_ranges(nums: list[int]) -> str:
    """Job numbers as runs of consecutive ones: "#0-#255" for a group of 256, "#1, #3-#5" otherwise."""
    runs: list[list[int]] = []
    for num in nums:
        if runs and num == runs[-1][1] + 1:
            runs[-1][1] = num
        else:
            runs.append([num, num])
    return ", ".join(f"#{a}" if a == b else f"#{a}-#{b}" for a, b in runs)


def chunks(jobs: list[Job], size: int) -> list[list[Job]]:
    return [jobs[i:i + size] for i in range(0, len(jobs), size)]


def writer(job: Job, result: Optional[tuple[Outcome, datetime, float, torch.device]]):
    """The task Hydra runs in a member's job folder: it writes the member's records (or logs
    that an earlier attempt already did) with the ordinary runner's code."""
    def write(cfg: DictConfig) -> float:
        context = job_context(None)
        if result is None:
            done = finished_before(context.folder, job.settings)
            log_skipped(done)
        else:
            outcome, started_at, wall_time_s, device = result
            if isinstance(outcome, MemberRecords):
                outcome = outcome.outcome()
            done = record(context, job.settings, device, started_at, wall_time_s, outcome)
        return objective(done)
    return write
