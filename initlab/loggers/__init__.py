"""A run's records, also where researchers already look: TensorBoard and MLflow (`logger` group).

A logger is handed a finished run (its summary and tables: what its folder holds) and writes it
out, at the end of every run (train.record: the vectorized launcher's members log exactly as
ordinary runs do) or after the fact from run folders (`initlab-report --tensorboard/--mlflow`).
A logger that fails warns once per run and never fails it: the run's folder is its record.

This module imports neither library (config/loggers.py checks the `logger` node before anything
runs), and a logger whose library is missing says how to install it, in one line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional


from initlab.loggers.run_info import RunInfo

log = logging.getLogger("initlab")

_built: dict[str, list] = {}


def build(node: Optional[dict]) -> list:
    """The logger objects a `logger` node asks for (made once per process and setting)."""
    if not node:
        return []
    key = json.dumps(node, sort_keys=True)
    if key not in _built:
        from initlab.config.targets import resolve

        _built[key] = [resolve(settings["_target_"])(**{k: v for k, v in settings.items() if k != "_target_"})
                       for settings in node.values()]
    return _built[key]


def prepare(node: Optional[dict], study: Optional[str]) -> None:
    """Let the loggers get ready (import, open their store) while the run trains."""
    for logger in build(node):
        if hasattr(logger, "prepare"):
            logger.prepare(study)


def log_run(node: Optional[dict], run: RunInfo) -> None:
    """Hand a finished run to every logger the config asks for; a failing logger only warns."""
    for logger in build(node):
        try:
            logger.log(run)
        except Exception as e:  # a logger must never cost a run its records
            log.warning(f"{type(logger).__name__} could not log {run.folder}: {type(e).__name__}: {e}")


def export(folders: list[Path], node: dict, report_dir: Optional[Path] = None) -> int:
    """Hand finished run folders to the loggers of `node` (initlab-report --tensorboard/--mlflow),
    and the report's files to each sweep's MLflow parent run; returns how many runs were exported."""
    from initlab.store import records
    sweeps: dict[Path, Optional[str]] = {}
    done = 0
    for folder in folders:
        try:
            record = records.load_run(folder)
        except (FileNotFoundError, records.Unreadable, OSError):
            continue  # unfinished or damaged: nothing to export (the report names it)
        sweep = folder.parent if (folder.parent / "multirun.yaml").exists() else None
        study = (record.summary.get("choices") or {}).get("experiment")
        log_run(node, RunInfo(folder, record.summary, record.layers, record.curves, sweep, study))
        if sweep is not None:
            sweeps[sweep] = study
        done += 1
    if report_dir is not None:
        from initlab.loggers.mlflow import MLflow, attach_report

        for logger in build(node):
            if isinstance(logger, MLflow):
                for sweep, study in sweeps.items():
                    attach_report(logger, sweep, report_dir, study)
    return done


