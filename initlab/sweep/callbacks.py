"""Hydra callbacks that initlab ships (conf/hydra/callbacks/)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from initlab.store import records
log = logging.getLogger("initlab")


def run_status(folder: Path) -> str:
    """A run's status from its summary.json alone: `unfinished` without one, `corrupt` when it cannot
    be read (the report also reads the tables, and calls a run whose tables are damaged corrupt too)."""
    try:
        return records.read_summary(folder)["status"]
    except FileNotFoundError:
        return "unfinished"
    except (records.Unreadable, OSError):
        return "corrupt"


def sweep_statuses(sweep_dir: Path) -> Counter:
    """How many runs under `sweep_dir` completed, diverged, failed, never finished, or are damaged."""
    from initlab.report.tables import find_runs

    return Counter(run_status(folder) for folder in find_runs([sweep_dir])) if sweep_dir.exists() else Counter()


class OutputFolder(Callback):
    """Before Hydra makes the run's (or the sweep's) folder: one line and exit 2 when it cannot be
    written (Hydra's own error is a traceback from inside its job runner)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(folder: str, key: str) -> None:
        from initlab.build.environment import Unavailable, check_writable

        try:
            check_writable(folder, key)
        except Unavailable as e:
            print(f"initlab: {e}", file=sys.stderr)
            raise SystemExit(2) from None


def attach_to_mlflow(config: DictConfig, sweep_dir: Path, report_dir: Path) -> None:
    """With logger=mlflow, the sweep's report goes to its parent run."""
    from omegaconf import OmegaConf

    from initlab import loggers
    from initlab.loggers.mlflow import MLflow, attach_report

    node = config.get("logger")
    node = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else (node or {})
    study = config.hydra.runtime.choices.get("experiment") if "runtime" in config.hydra else None
    for logger in loggers.build(node):
        if isinstance(logger, MLflow):
            attach_report(logger, sweep_dir, report_dir, study)


class SweepEnd(Callback):
    """When a multirun ends: print the run counts, optionally write the report, and exit 1 if a run
    failed, never finished or cannot be read.

    It reads the sweep folder, not the launcher's return values, so it counts the same way for
    every launcher (basic, joblib, submitit) and includes runs finished by an earlier attempt.
    """

    def __init__(self, report: bool = False, report_process_from: int = 256) -> None:
        if isinstance(report_process_from, bool) or not isinstance(report_process_from, int) or report_process_from < 1:
            raise ValueError(f"hydra.callbacks.sweep_end.report_process_from={report_process_from!r}: allowed: a whole "
                             f"number of runs, 1 or more")
        self.report, self.report_process_from = report, report_process_from

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from initlab.report.tables import STATUSES as states

        sweep_dir = Path(config.hydra.sweep.dir)
        counts = sweep_statuses(sweep_dir)
        log.info(f"sweep: {sum(counts.values())} runs: " + ", ".join(f"{counts[s]} {s}" for s in states)
                 + f" | {sweep_dir}")
        if self.report and counts:
            try:
                attach_to_mlflow(config, sweep_dir, self._write_report(sweep_dir, sum(counts.values())))
            except Exception as e:  # the runs are done and on disk: a report problem must not hide that
                log.error(f"report failed ({type(e).__name__}: {e}); retry with: initlab-report {sweep_dir}")
        if counts["corrupt"]:
            log.error(f"{counts['corrupt']} run(s) have a damaged summary.json: the next run of this sweep runs them again")
        if counts["unfinished"]:
            log.error(f"{counts['unfinished']} run(s) never finished (killed, or their records could not be written): "
                      f"the same command runs them again")
        if counts["failed"]:
            log.error(f"{counts['failed']} run(s) failed: their error.txt has the traceback")
        if counts["failed"] or counts["corrupt"] or counts["unfinished"]:
            raise SystemExit(1)

    def _write_report(self, sweep_dir: Path, runs: int) -> Path:
        """The sweep's report, into <sweep dir>/report; that folder.

        From `report_process_from` runs on (and with more than one usable core), `initlab-report`
        writes it in a process of its own, which draws the figures in worker processes
        (report/figures/processes.py): its ~1.5 s of imports pay for themselves at that size (1,024 runs: 12.7
        and 11.6 s one figure after another here, 8.6 and 8.4 s so on 2 cores; bench_sweep_end_report.py).
        This process is not forked for them: it may hold a CUDA context and a launcher's threads.
        When that process fails, the report is written here.
        """
        from initlab.cores import usable_cores
        from initlab.report.page import write_report

        out = sweep_dir / "report"
        workers = usable_cores()
        if runs >= self.report_process_from and workers > 1:
            log.info(f"report: {runs} runs: written by initlab-report in a process of its own, its figures "
                     f"drawn by up to {workers} processes")
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            done = subprocess.run([sys.executable, "-m", "initlab.report.page", str(sweep_dir), "--out", str(out)])
            if done.returncode in (0, 1):  # 1: written, and some runs are damaged (counted here too)
                return out
            log.warning(f"initlab-report exited with code {done.returncode}: the report is written here instead")
        return write_report([sweep_dir], out).out

