"""The on-disk format of one run, and reading it back.

A run directory holds:
  layers.parquet  per-layer statistics, one row per (step, layer, metric)
  curves.parquet  training curves, one row per (step, metric)
  error.txt       the traceback, only when the run failed
  summary.json    status, final metrics, config and provenance; written last

Every file is written to a temporary name and renamed, so a reader never sees half a file,
and summary.json is written last: a directory without it is a run that never finished.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from initlab import file_writes

SCHEMA_VERSION = 1
SUMMARY, LAYERS, CURVES, ERROR = "summary.json", "layers.parquet", "curves.parquet", "error.txt"
STATUSES = ("completed", "diverged", "failed")


LAYER_COLUMNS = ["step", "epoch", "layer", "metric", "value"]
LAYER_TYPES = {"step": "int64", "epoch": "int64", "layer": "int64", "metric": "str", "value": "float64"}
CURVE_COLUMNS = ["step", "epoch", "metric", "value"]
CURVE_TYPES = {"step": "int64", "epoch": "int64", "metric": "str", "value": "float64"}


def _frame(rows: list[tuple], columns: list[str], types: dict[str, str]) -> pd.DataFrame:
    """A typed table from rows, built column by column (pandas' row-wise construction and
    astype took a tenth of a vectorized member's records)."""
    values = list(zip(*rows)) if rows else [()] * len(columns)
    return pd.DataFrame({c: pd.Series(v, dtype=types[c]) if types[c] == "str" else np.asarray(v, dtype=types[c])
                         for c, v in zip(columns, values)})


def layers_frame(rows: list[tuple] = ()) -> pd.DataFrame:
    """A layers table from (step, epoch, layer, metric, value) rows."""
    return _frame(list(rows), LAYER_COLUMNS, LAYER_TYPES)


def curves_frame(rows: list[tuple] = ()) -> pd.DataFrame:
    """A curves table from (step, epoch, metric, value) rows."""
    return _frame(list(rows), CURVE_COLUMNS, CURVE_TYPES)


def clear_run(folder: Path) -> None:
    """Remove an earlier attempt's summary and error, so the folder counts as unfinished until this run ends."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (SUMMARY, ERROR):
        (folder / name).unlink(missing_ok=True)


def _atomic(path: Path, write) -> None:
    """Write `path` through a temporary file renamed over it: a reader sees the old file or the
    whole new one. Queued for the background writer inside file_writes.BackgroundWrites."""
    def now() -> None:
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        write(tmp)
        os.replace(tmp, path)
    file_writes.write(now)


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, default=str) + "\n"  # now: `obj` may change after the call
    _atomic(path, lambda tmp: tmp.write_text(text))


def write_table(path: Path, table: pd.DataFrame) -> None:
    _atomic(path, lambda tmp: table.to_parquet(tmp, index=False))


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text))


def save_run(folder: Path, summary: dict, layers: pd.DataFrame, curves: pd.DataFrame) -> None:
    """Write a run's tables, then its summary (the marker that the run is finished)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_table(folder / LAYERS, layers)
    write_table(folder / CURVES, curves)
    write_json(folder / SUMMARY, {"schema_version": SCHEMA_VERSION, **summary})


@dataclass
class RunRecord:
    """A finished run read back from disk."""

    folder: Path
    summary: dict
    layers: pd.DataFrame
    curves: pd.DataFrame


def is_finished(folder: Path) -> bool:
    return (Path(folder) / SUMMARY).is_file()


def load_run(folder: str | Path) -> RunRecord:
    """Read a run directory written by `save_run`."""
    folder = Path(folder)
    if not is_finished(folder):
        raise FileNotFoundError(f"{folder} holds no {SUMMARY}: the run did not finish")
    summary = json.loads((folder / SUMMARY).read_text())
    if summary.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{folder / SUMMARY}: schema_version {summary.get('schema_version')}, "
                         f"this initlab reads {SCHEMA_VERSION}")
    return RunRecord(folder, summary, pd.read_parquet(folder / LAYERS), pd.read_parquet(folder / CURVES))
