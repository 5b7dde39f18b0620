"""Hydra callbacks that initlab ships (conf/hydra/callbacks/)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("initlab")


def sweep_statuses(sweep_dir: Path) -> Counter:
    """How many runs under `sweep_dir` completed, diverged, failed, or never finished."""
    from initlab.report import find_runs

    counts: Counter = Counter()
    if sweep_dir.exists():
        for folder in find_runs([sweep_dir]):
            summary = folder / "summary.json"
            counts[json.loads(summary.read_text())["status"] if summary.exists() else "unfinished"] += 1
    return counts


class SweepEnd(Callback):
    """When a multirun ends: print the run counts, optionally write the report, and exit 1 if a run failed.

    It reads the sweep folder, not the launcher's return values, so it counts the same way for
    every launcher (basic, joblib, submitit) and includes runs finished by an earlier attempt.
    """

    def __init__(self, report: bool = False) -> None:
        self.report = report

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        counts = sweep_statuses(sweep_dir)
        states = ("completed", "diverged", "failed", "unfinished")
        log.info(f"sweep: {sum(counts.values())} runs: " + ", ".join(f"{counts[s]} {s}" for s in states)
                 + f" | {sweep_dir}")
        if self.report and counts:
            from initlab.report_page import write_report

            try:
                write_report([sweep_dir], sweep_dir / "report")
            except Exception as e:  # the runs are done and on disk: a report problem must not hide that
                log.error(f"report failed ({type(e).__name__}: {e}); retry with: initlab-report {sweep_dir}")
        if counts["failed"]:
            log.error(f"{counts['failed']} run(s) failed: their error.txt has the traceback")
            raise SystemExit(1)
