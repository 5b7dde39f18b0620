"""`run(cfg) -> RunResult`: one configuration from config to records on disk (resume, failures, provenance)."""

from __future__ import annotations

import logging
import math
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from initlab.build import data as datasets
from initlab import loggers
from initlab.store import provenance
from initlab.store import records
from initlab.config.check import ConfigError, validate
from initlab.diagnosis.diagnose import describe, diagnose
from initlab.diagnosis.evidence import Context
from initlab.build.environment import resolve_device
from initlab.train.loop import Outcome, Training

log = logging.getLogger("initlab")


class RecordsNotWritten(OSError):
    """A run's records could not be written (a full disk, a folder gone): it stays unfinished, with
    no summary.json and no half-written file, and a resumed sweep runs it again. One readable line."""


@dataclass
class RunResult:
    """What one run produced: the same content as its directory's files."""

    status: str  # completed, diverged or failed
    metrics: dict
    folder: Path
    summary: dict
    layers: pd.DataFrame
    curves: pd.DataFrame


def objective(result: Optional["RunResult"]) -> float:
    """A job's value for a sweeper that minimizes (Optuna): the final test loss, inf when there is none."""
    loss = result.metrics.get("test_loss") if result is not None else None
    return loss if loss is not None and math.isfinite(loss) else math.inf


@dataclass
class JobContext:
    """Where a run writes and what Hydra knows about it (defaults when run() is called directly)."""

    folder: Path
    choices: dict
    overrides: list
    job_num: Optional[int] = None  # the job's index in a multirun
    sweep_dir: Optional[Path] = None  # the multirun's folder


def job_context(output_dir: Optional[str | Path]) -> JobContext:
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
        multirun = hc.mode == RunMode.MULTIRUN
        return JobContext(Path(output_dir or hc.runtime.output_dir), choices, list(hc.overrides.task),
                          hc.job.num if multirun else None, Path(hc.sweep.dir) if multirun else None)
    if output_dir is None:
        raise ValueError("run() outside Hydra needs an output_dir")
    return JobContext(Path(output_dir), {}, [])


def finished_before(folder: Path, settings: dict) -> Optional[RunResult]:
    """The run already in `folder` when it is this configuration's and it finished (resume)."""
    if settings["rerun"] or not records.is_finished(folder):
        return None
    try:
        previous = records.load_run(folder)
    except Exception:  # unreadable or from another schema version: run again
        return None
    summary = previous.summary
    # The identity is recomputed from the recorded config (migrated from its identity version), not
    # read from the recorded hash: a key added since with a neutral default leaves it unchanged.
    if summary.get("status") not in ("completed", "diverged") or provenance.recorded_hash(summary) != provenance.config_hash(settings):
        return None
    return RunResult(summary["status"], summary["metrics"], folder, summary, previous.layers, previous.curves)


def record(job: JobContext, settings: dict, device: Optional[torch.device], started_at: datetime, wall_time_s: float,
           outcome: Outcome) -> RunResult:
    """Diagnose an outcome, write its records into the job folder, print its last lines."""
    context = outcome.context
    context.error = None if outcome.error is None else f"{type(outcome.error).__name__}: {outcome.error}"
    context.theory = outcome.theory
    diagnosis = diagnose(outcome.layers, outcome.curves, context, settings["diagnose"])
    summary = provenance.summary(
        status=outcome.status, metrics=outcome.metrics, diverged_at_step=context.diverged_at_step,
        settings=settings, diagnosis=diagnosis, stopped=outcome.stopped, choices=job.choices,
        overrides=job.overrides, device=device, started_at=started_at, wall_time_s=wall_time_s,
        error=outcome.error, theory=outcome.theory, jacobian=outcome.jacobian,
    )
    try:
        records.save_run(job.folder, summary, outcome.layers, outcome.curves)
    except OSError as e:
        raise RecordsNotWritten(f"{job.folder}: records not written ({e.strerror or e}): the run stays "
                                f"unfinished and runs again when the sweep is resumed") from e
    loggers.log_run(settings.get("logger"), loggers.RunInfo(job.folder, summary, outcome.layers, outcome.curves,
                                                            job.sweep_dir, job.choices.get("experiment")))
    for line in describe(diagnosis):
        log.info(line)
    log.info(f"{outcome.status} | {provenance.describe(summary['metrics'])} | {outcome.steps} steps | "
             f"{summary['wall_time_s']:.1f}s | {job.folder}")
    return RunResult(outcome.status, summary["metrics"], job.folder, summary, outcome.layers, outcome.curves)


def log_skipped(done: RunResult) -> None:
    log.info(f"skipped: {done.folder} already holds this configuration's {done.status} run (rerun=true runs it again)")


def run(cfg: DictConfig, output_dir: Optional[str | Path] = None) -> RunResult:
    """Train the configuration `cfg` and write its records into `output_dir` (Hydra's job dir by default).

    A bad config value raises ConfigError, a device this machine lacks Unavailable (a ConfigError)
    and a missing or damaged dataset DataError, before anything is written. When the folder already holds this configuration's finished run (a resumed sweep),
    that run is returned and nothing trains, unless `rerun=true`. A non-finite loss ends the run
    with status `diverged`; any other exception is recorded as `failed` (summary.json and
    error.txt) and then raised again.
    """
    settings = validate(cfg)
    job = job_context(output_dir)
    with records.job_lock(job.folder):  # another process resuming this sweep waits, then skips it
        done = finished_before(job.folder, settings)
        if done is not None:
            log_skipped(done)
            return done
        device = resolve_device(settings["trainer"]["device"], job.job_num)  # Unavailable before anything is written
        loggers.prepare(settings.get("logger"), job.choices.get("experiment"))
        records.clear_run(job.folder)  # a half-written earlier attempt must never count as this run's result
        started_at, started = datetime.now(timezone.utc), time.perf_counter()
        training = None
        try:
            training = Training(settings, device)
            outcome = training.outcome(training.fit())
        except (ConfigError, datasets.DataError):
            raise
        except Exception as e:  # a crash is a result too: record it, then let it propagate
            outcome = failed_outcome(settings, training, e, job.folder)
        result = record(job, settings, device, started_at, time.perf_counter() - started, outcome)
    if outcome.error is not None:
        raise outcome.error
    return result


def failed_outcome(settings: dict, training: Optional["Training"], error: BaseException, folder: Path) -> Outcome:
    """The outcome of a run that raised: what it recorded so far, and the traceback in error.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    records.write_text(folder / records.ERROR, traceback.format_exc())
    log.error(f"failed: {type(error).__name__}: {error} (traceback in {folder / records.ERROR})")
    if training is not None:
        outcome = training.outcome("failed")
    else:
        m = settings["model"]
        context = Context(num_classes=0, activation=m["activation"], output_activation=m["output_activation"],
                          status="failed")
        outcome = Outcome("failed", {}, records.layers_frame(), records.curves_frame(), context, 0)
    outcome.error = error
    return outcome
