"""A finished run as a logger sees it, and what every logger writes of it alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from initlab.config.errors import ConfigError
from initlab.store.flat import flatten


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


def missing(package: str, extra: str) -> ConfigError:
    return ConfigError(f"logger: the {package} package is not installed (pip install 'initlab[{extra}]')")


def hyperparameters(run: RunInfo) -> dict:
    """The run's group choices and the config values its overrides set (what a sweep varies)."""
    flat = flatten(run.summary.get("config") or {})
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
