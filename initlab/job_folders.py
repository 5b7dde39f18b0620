"""A stacked member's job folder, with the files Hydra's run_job writes, at a fraction of its cost.

For each job of a sweep Hydra's `run_job` deep-copies the config twice, copies the hydra node
into HydraConfig twice, re-configures logging from scratch (a new file handler) and renders
three YAML files. For the members of a stacked group, whose training is already done, that is
most of the per-job cost. `write_member` does the same steps once each: the same
`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml` (rendered by OmegaConf, so byte for byte
what run_job writes), the same job log file (the logging config is applied in full for the
first job and whenever it changes in anything but the file's path; otherwise the file handler
is pointed at the new job's file), the same callbacks and the same JobReturn.
tests/test_vectorized.py compares the folders with the basic launcher's.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, configure_log, env_override
from omegaconf import DictConfig, OmegaConf, open_dict, read_write


def _files(conf: dict) -> dict[str, str]:
    """The file names a logging config's handlers write to, by handler name."""
    return {name: h["filename"] for name, h in (conf.get("handlers") or {}).items() if "filename" in h}


class JobLogs:
    """Job log files: the full logging config once, then only the file handlers re-pointed."""

    def __init__(self) -> None:
        self.conf: Optional[dict] = None  # the last logging config applied, file names blanked

    def use(self, hydra: DictConfig) -> None:
        """Log into the job's files as `hydra` (a job's hydra node) configures them."""
        log_config = hydra.job_logging
        if log_config is None:
            configure_log(log_config, hydra.verbose)
            return
        conf = OmegaConf.to_container(log_config, resolve=True)
        files = _files(conf)
        same_but_files = {**conf, "handlers": {n: {**h, "filename": None} if "filename" in h else h
                                               for n, h in (conf.get("handlers") or {}).items()}}
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
        if same_but_files != self.conf or len(handlers) != len(files):
            configure_log(log_config, hydra.verbose)
            self.conf = same_but_files
            return
        for handler, filename in zip(handlers, files.values()):
            Path(filename).parent.mkdir(parents=True, exist_ok=True)
            handler.acquire()
            try:
                handler.close()
                handler.baseFilename = os.path.abspath(filename)
                handler.stream = handler._open()
            finally:
                handler.release()


def _watches_jobs(callbacks) -> bool:
    """Whether any registered Hydra callback does something on job start or end."""
    return any(type(cb).on_job_start is not Callback.on_job_start or type(cb).on_job_end is not Callback.on_job_end
               for cb in getattr(callbacks, "callbacks", []))


def write_member(config: DictConfig, task: Callable[[DictConfig], Any], callbacks, logs: JobLogs,
                 job_dir_key: str = "hydra.sweep.dir", job_subdir_key: str = "hydra.sweep.subdir") -> JobReturn:
    """What hydra.core.utils.run_job does for one job.

    `config` is the job's own: its hydra node is taken out of it for the task (no copy).
    """
    output_dir = os.path.join(str(OmegaConf.select(config, job_dir_key)), str(OmegaConf.select(config, job_subdir_key)))
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = os.path.abspath(output_dir)
    previous, old_cwd = HydraConfig.instance().cfg, os.getcwd()
    HydraConfig.instance().set_config(config)
    try:
        hydra_cfg = HydraConfig.instance().cfg
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        logs.use(config.hydra)  # its interpolations resolve against the whole config
        # Callbacks that watch jobs get the whole config, as from run_job (a copy, only then).
        full = copy.deepcopy(config) if _watches_jobs(callbacks) else config
        # The job's config is this job's alone: its task part is taken without a copy (run_job
        # deep-copies the whole config and deletes the hydra node; HydraConfig keeps its own copy).
        task_cfg = config
        with open_dict(task_cfg):
            del task_cfg["hydra"]
        hydra = hydra_cfg.hydra
        ret = JobReturn(overrides=OmegaConf.to_container(hydra.overrides.task), cfg=task_cfg,
                        hydra_cfg=hydra_cfg, working_dir=os.getcwd())
        if hydra.output_subdir is not None:
            hydra_output = Path(hydra.runtime.output_dir) / str(hydra.output_subdir)
            hydra_output.mkdir(parents=True, exist_ok=True)
            for name, node in (("config.yaml", task_cfg), ("hydra.yaml", hydra_cfg),
                               ("overrides.yaml", hydra.overrides.task)):
                (hydra_output / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")
        if hydra.job.chdir:  # initlab's conf says false; a user's may say true, as run_job honours it
            os.chdir(output_dir)
            ret.working_dir = output_dir
        with env_override(hydra.job.env_set):
            callbacks.on_job_start(config=full, task_function=task)
            try:
                ret.return_value = task(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as e:
                ret.return_value, ret.status = e, JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        for handler in logging.getLogger().handlers:
            handler.flush()
        callbacks.on_job_end(config=full, job_return=ret)
        return ret
    finally:
        HydraConfig.instance().cfg = previous
        os.chdir(old_cwd)
