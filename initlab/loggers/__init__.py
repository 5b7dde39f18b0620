"""A run's records, also where researchers already look: TensorBoard and MLflow (`logger` group).

A logger is handed a finished run (its summary and tables: what its folder holds) and writes it
out, at the end of every run (train.record: the vectorized launcher's members log exactly as
ordinary runs do) or after the fact from run folders (`initlab-report --tensorboard/--mlflow`).
A logger that fails warns once per run and never fails it: the run's folder is its record.

This module imports neither library: `check` validates the `logger` node for the config check,
and a logger whose library is missing says how to install it, in one line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from initlab.config.errors import ConfigError

log = logging.getLogger("initlab")

# logger name -> (the class its _target_ must name, its settings)
KNOWN = {
    "tensorboard": ("initlab.loggers.tensorboard.TensorBoard", ("log_dir",)),
    "mlflow": ("initlab.loggers.mlflow.MLflow", ("tracking_uri", "experiment_name", "max_points")),
}


@dataclass
class RunInfo:
    """A finished run, as a logger sees it."""

    folder: Path
    summary: dict
    layers: pd.DataFrame
    curves: pd.DataFrame
    sweep_dir: Optional[Path] = None  # the multirun it belongs to (MLflow: its parent run)
    study: Optional[str] = None  # experiment=<study> (MLflow: the experiment's name)

    @property
    def name(self) -> str:
        return self.folder.name


def check(node) -> None:
    """Raise a one-line ConfigError unless `node` (the config's `logger`) names known loggers and settings."""
    if node is None:
        return
    if not isinstance(node, dict):
        raise ConfigError(f"logger={node!r}: choose loggers with logger=none, tensorboard, mlflow or [tensorboard,mlflow]")
    for name, settings in node.items():
        if name not in KNOWN:
            raise ConfigError(f"logger.{name}: not a logger (allowed: {', '.join(KNOWN)})")
        target, keys = KNOWN[name]
        if not isinstance(settings, dict) or settings.get("_target_") != target:
            raise ConfigError(f"logger.{name}._target_: must be {target}")
        for key, value in settings.items():
            if key != "_target_" and key not in keys:
                raise ConfigError(f"logger.{name}.{key}: not a setting of {target} (allowed: {', '.join(keys)})")
            if key == "max_points":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
                    raise ConfigError(f"logger.{name}.max_points={value!r}: must be an integer >= 2 or null (every point)")
            elif key != "_target_" and value is not None and not isinstance(value, str):
                raise ConfigError(f"logger.{name}.{key}={value!r}: must be text or null")


_built: dict[str, list] = {}


def build(node: Optional[dict]) -> list:
    """The logger objects a `logger` node asks for (made once per process and setting)."""
    if not node:
        return []
    key = json.dumps(node, sort_keys=True)
    if key not in _built:
        from hydra.utils import get_class

        _built[key] = [get_class(settings["_target_"])(**{k: v for k, v in settings.items() if k != "_target_"})
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


def missing(package: str, extra: str) -> ConfigError:
    return ConfigError(f"logger: the {package} package is not installed (pip install 'initlab[{extra}]')")


def hyperparameters(run: RunInfo) -> dict:
    """The run's group choices and the config values its overrides set (what a sweep varies)."""
    from initlab.report.tables import _flatten

    flat = _flatten(run.summary.get("config") or {})
    chosen = {group: option for group, option in (run.summary.get("choices") or {}).items() if option is not None}
    swept = {}
    for override in run.summary.get("overrides") or []:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in flat:
            swept[key] = flat[key]
    return {**chosen, **swept}


def diagnosis_text(summary: dict) -> str:
    """The verdict as markdown: the label, then each finding."""
    diagnosis = summary.get("diagnosis") or {}
    lines = [f"**{diagnosis.get('label', summary.get('status'))}** ({summary.get('status')})", ""]
    lines += [f"- {f['kind']}: {f['message']}" for f in diagnosis.get("findings") or []]
    return "\n".join(lines)
