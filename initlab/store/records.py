"""The on-disk format of one run, and reading it back.

A run directory holds:
  layers.parquet  per-layer statistics, one row per (step, layer, metric)
  curves.parquet  training curves, one row per (step, metric)
  error.txt       the traceback, only when the run failed
  summary.json    status, final metrics, config and provenance; written last

Every file is written whole before it gets its name (`_atomic`), so a reader never sees half a
file and a process killed mid-write leaves nothing behind; summary.json is written last: a
directory without it is a run that never finished. A finished
run whose files cannot be read (a damaged disk, a copy cut short) is `corrupt` to a reader and
unfinished to a resumed sweep, which runs it again.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from initlab.store import file_writes

from initlab.store import whole_files
log = logging.getLogger("initlab")

SCHEMA_VERSION = 1
SUMMARY, LAYERS, CURVES, ERROR = "summary.json", "layers.parquet", "curves.parquet", "error.txt"
LOCK = ".initlab.lock"  # held by the process running the job (job_lock)
STATUSES = ("completed", "diverged", "failed")


LAYER_COLUMNS = ["step", "epoch", "layer", "metric", "value"]
LAYER_TYPES = {"step": "int64", "epoch": "int64", "layer": "int64", "metric": "str", "value": "float64"}
CURVE_COLUMNS = ["step", "epoch", "metric", "value"]
CURVE_TYPES = {"step": "int64", "epoch": "int64", "metric": "str", "value": "float64"}


def _frame(rows: list[tuple], columns: list[str], types: dict[str, str]) -> pd.DataFrame:
    """A typed table from rows, built column by column (pandas' row-wise construction and
    astype took a tenth of a vectorized member's records)."""
    values = list(zip(*rows)) if rows else [()] * len(columns)
    return _typed(dict(zip(columns, values)), types)


def _typed(columns: dict, types: dict[str, str]) -> pd.DataFrame:
    """A table of `columns` (name -> values), each as its type in `types` says."""
    return pd.DataFrame({c: pd.Series(v, dtype=types[c]) if types[c] == "str" else np.asarray(v, dtype=types[c])
                         for c, v in columns.items()})


# pandas' "str" columns: Arrow strings from pandas 3 on (object arrays of str before).
_ARROW_STR = getattr(pd.Series([], dtype="str").dtype, "storage", None) == "pyarrow"


def str_column(names: list[str], codes: np.ndarray) -> pd.Series:
    """A "str" column of names[codes], as pd.Series(np.asarray(names, dtype=object)[codes], dtype="str")
    makes it, built by Arrow from the codes: a third of the time for a member's ~10,000 metric names
    (0.31 against 0.98 ms on the 2-core VM)."""
    if not _ARROW_STR:
        return pd.Series(np.asarray(names, dtype=object)[codes], dtype="str")
    names_of = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(names, pa.large_string()))
    return pd.Series(pd.array(names_of.cast(pa.large_string()), dtype="str"))


def layers_frame(rows: list[tuple] = ()) -> pd.DataFrame:
    """A layers table from (step, epoch, layer, metric, value) rows."""
    return _frame(list(rows), LAYER_COLUMNS, LAYER_TYPES)


def curves_frame(rows: list[tuple] = ()) -> pd.DataFrame:
    """A curves table from (step, epoch, metric, value) rows."""
    return _frame(list(rows), CURVE_COLUMNS, CURVE_TYPES)


def curves_of(metric: str, steps: np.ndarray, epochs: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """A curves table of one metric from its arrays (as curves_frame makes it from rows)."""
    names = str_column([metric], np.zeros(len(steps), dtype=np.int32))
    return _typed({"step": steps, "epoch": epochs, "metric": names, "value": values}, CURVE_TYPES)


def lock_job(folder: Path, wait: bool = True) -> Optional[FileLock]:
    """Take the lock on one job's folder, held while a process decides whether the job is finished,
    trains it and writes its records: two processes resuming one sweep train each job once.

    Returns the lock, acquired (the caller releases it); with wait=False, None when another process
    holds it. The lock is the operating system's (flock), so a process killed with -9 lets it go.
    Re-entrant within a process: one lock object per folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK), is_singleton=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            return None
        log.info(f"waiting: another process is running the job in {folder}")
        lock.acquire()
    return lock


@contextmanager
def job_lock(folder: Path) -> Iterator[FileLock]:
    """`lock_job(folder)` for the length of a with block."""
    lock = lock_job(folder)
    try:
        yield lock
    finally:
        lock.release()


def clear_run(folder: Path) -> None:
    """Remove an earlier attempt's records, so the folder counts as unfinished until this run ends
    (the summary first: a reader never pairs it with tables that are going away). The caller
    holds the job's lock. Also removes the named temporaries an attempt killed mid-write left
    where files cannot be written nameless (whole_files)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (SUMMARY, ERROR, LAYERS, CURVES):
        (folder / name).unlink(missing_ok=True)
        whole_files.remove_leftovers(folder / name)


def _atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` whole or not at all (whole_files.write: a process killed mid-write leaves
    nothing; where files cannot be nameless, clear_run removes the temporary it leaves). Queued
    for the background writer inside file_writes.BackgroundWrites."""
    file_writes.write(lambda: whole_files.write(path, write))


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, default=str) + "\n"  # now: `obj` may change after the call
    _atomic(path, lambda f: f.write(text.encode()))


def write_table(path: Path, table: pd.DataFrame) -> None:
    _atomic(path, lambda f: table.to_parquet(f, index=False))


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()))


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


class Unreadable(Exception):
    """A run's file exists but cannot be read. The message names the file and what is wrong."""


def is_finished(folder: Path) -> bool:
    return (Path(folder) / SUMMARY).is_file()


def read_summary(folder: Path) -> dict:
    """The run's summary.json; Unreadable when it is truncated, not JSON, from another schema, or
    lacks a status; FileNotFoundError when there is none (the run never finished, or is running again)."""
    path = Path(folder) / SUMMARY
    text = path.read_bytes()
    try:
        summary = json.loads(text)
    except ValueError as e:  # UnicodeDecodeError too
        raise Unreadable(f"{SUMMARY}: not valid JSON ({e}; {len(text)} bytes)") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), dict):
        raise Unreadable(f"{SUMMARY}: not a run summary (no metrics)")
    if summary.get("status") not in STATUSES:
        raise Unreadable(f"{SUMMARY}: status {summary.get('status')!r} is none of {', '.join(STATUSES)}")
    if summary.get("schema_version") != SCHEMA_VERSION:
        raise Unreadable(f"{SUMMARY}: schema_version {summary.get('schema_version')!r}, this initlab reads {SCHEMA_VERSION}")
    return summary


def read_arrow(folder: Path, name: str) -> pa.Table:
    """One of the run's parquet tables as an Arrow table; Unreadable when it is missing, damaged or
    lacks its columns. (Arrow's reader lets go of the GIL: a report reads many runs on threads.)
    One file as one ParquetFile: pq.read_table sets up a dataset (file system, discovery) for it
    first, which took half of its ~0.6 ms a file."""
    try:
        with pq.ParquetFile(Path(folder) / name) as file:
            table = file.read()
    except FileNotFoundError:
        raise Unreadable(f"{name}: missing (summary.json says the run finished)") from None
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
        raise Unreadable(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    missing = [c for c in (LAYER_COLUMNS if name == LAYERS else CURVE_COLUMNS) if c not in table.column_names]
    if missing:
        raise Unreadable(f"{name}: no column(s) {', '.join(missing)}")
    return table


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """One of the run's parquet tables; Unreadable when it is missing, damaged or lacks its columns."""
    return read_arrow(folder, name).to_pandas()


def load_run(folder: str | Path) -> RunRecord:
    """Read a run directory written by `save_run` (FileNotFoundError: unfinished; Unreadable: damaged)."""
    folder = Path(folder)
    if not is_finished(folder):
        raise FileNotFoundError(f"{folder} holds no {SUMMARY}: the run did not finish")
    summary = read_summary(folder)
    return RunRecord(folder, summary, read_table(folder, LAYERS), read_table(folder, CURVES))
