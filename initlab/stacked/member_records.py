"""One member's tables, cut from its stacked group's arrays: what the group hands each job to write."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from initlab.store import records
from initlab.train import predictions as theory_rows
from initlab.diagnosis.evidence import Context
from initlab.train.loop import Outcome

log = logging.getLogger("initlab")

# Settings that may differ inside a group; everything else must match.


def by_member(values: list[np.ndarray], kept: list[np.ndarray], members: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocks of (rows, members) values, and whether each member has each row, joined and turned
    (members, rows): a member's row is contiguous."""
    if not values:
        return np.empty((members, 0)), np.zeros((members, 0), dtype=bool)
    return np.ascontiguousarray(np.concatenate(values).T), np.ascontiguousarray(np.concatenate(kept).T)


def member_tables(values, index, metrics: list[str], eval_rows: list[tuple], curves: list[tuple],
            series: list[tuple] = (), predictions: Optional[dict] = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A member's (layers, curves) tables from what it recorded (Recorder.member_values, its evaluation
    rows, its curve rows and its per-step curves as arrays, GroupTraining.series); with the theory's
    `predictions`, the layers table as theory_rows.with_predictions makes it.

    Each table is one frame built from whole columns: table_of's rows then the evaluation and
    prediction rows; the curves sorted by (metric, step) as a stable sort_values would sort them.
    (The frames pandas built, joined and sorted per member took 2.7 ms of a member on the 2-core VM;
    these take 0.7.)"""
    rows = list(eval_rows)
    first = first_recorded(index, eval_rows) if predictions is not None else None
    if first is not None:
        rows += theory_rows.prediction_rows(predictions, *first)
    n_steps, n_layers, n_metrics = values.shape if len(values) else (0, 0, len(metrics))
    per_step = n_layers * n_metrics
    names = list(metrics)
    codes = {name: i for i, name in enumerate(names)}
    for row in rows:
        if row[3] not in codes:
            codes[row[3]] = len(names)
            names.append(row[3])
    layers = _columns(
        [np.repeat(index[:, 0], per_step) if n_steps else np.empty(0, np.int64), [r[0] for r in rows]],
        [np.repeat(index[:, 1], per_step) if n_steps else np.empty(0, np.int64), [r[1] for r in rows]],
        [np.tile(np.repeat(np.arange(n_layers, dtype=np.int64), n_metrics), n_steps), [r[2] for r in rows]],
        [np.tile(np.arange(n_metrics, dtype=np.int32), n_steps * n_layers), [codes[r[3]] for r in rows]],
        [np.asarray(values, dtype=np.float64).reshape(-1), [r[4] for r in rows]], names, records.LAYER_COLUMNS)
    curve_names = sorted({r[2] for r in curves} | {s[0] for s in series})
    rank = {name: i for i, name in enumerate(curve_names)}
    curves = _columns([[r[0] for r in curves], *(s[1] for s in series)],
                      [[r[1] for r in curves], *(s[2] for s in series)], None,
                      [[rank[r[2]] for r in curves], *(np.full(len(s[1]), rank[s[0]], np.int32) for s in series)],
                      [[r[3] for r in curves], *(s[3] for s in series)], curve_names, records.CURVE_COLUMNS,
                      order=lambda step, code: np.lexsort((step, code)))  # (stable: ties keep their order)
    return layers, curves


def _columns(steps, epochs, layers, codes, values, names: list[str], columns: list[str], order=None) -> pd.DataFrame:
    """A table of records' columns, each given as parts joined in order (`layers` None: a curves table);
    `order(steps, codes)`, when given, the rows' order."""
    def joined(parts, dtype):
        return np.concatenate([np.asarray(p, dtype=dtype) for p in parts]) if parts else np.empty(0, dtype)
    step, epoch, code, value = joined(steps, np.int64), joined(epochs, np.int64), joined(codes, np.int32), \
        joined(values, np.float64)
    layer = joined(layers, np.int64) if layers is not None else None
    if order is not None:
        at = order(step, code)
        step, epoch, code, value = step[at], epoch[at], code[at], value[at]
    table = {"step": step, "epoch": epoch, "layer": layer, "metric": records.str_column(names, code), "value": value}
    return pd.DataFrame({c: table[c] for c in columns})


def first_recorded(index: np.ndarray, eval_rows: list[tuple]) -> Optional[tuple[int, int]]:
    """(step, epoch) of the first row with the smallest step in the layers table that table_of(index)
    rows then `eval_rows` make; None when it has no rows."""
    candidates = []
    if len(index):
        k = int(np.argmin(index[:, 0]))
        candidates.append((int(index[k, 0]), 0, int(index[k, 1])))
    if eval_rows:
        k = min(range(len(eval_rows)), key=lambda i: eval_rows[i][0])
        candidates.append((int(eval_rows[k][0]), 1, int(eval_rows[k][1])))
    if not candidates:
        return None
    step, _, epoch = min(candidates)  # a tie: the table_of row comes first
    return step, epoch


@dataclass
class MemberRecords:
    """What one member of a finished group produced, before its tables are made: cheap to take from
    the group and to pickle, so the processes that write job folders make the tables
    (member_writes.py; ~3.6 ms a member on the 2-core VM, which the launcher spent alone before)."""

    status: str
    metrics: dict
    values: np.ndarray  # (log steps, layers, metrics), Recorder.member_values
    index: np.ndarray  # (log steps, 2): step, epoch
    metric_names: list[str]
    eval_rows: list[tuple]
    curves: list[tuple]
    series: list[tuple]  # (metric, steps, epochs, values) arrays: GroupTraining.series
    context: Context
    steps: int
    stopped: Optional[dict]
    theory: Optional[dict]
    jacobian: Optional[dict]

    def outcome(self) -> Outcome:
        layers, curves = member_tables(self.values, self.index, self.metric_names, self.eval_rows, self.curves, self.series,
                                 self.theory)
        return Outcome(self.status, self.metrics, layers, curves, self.context,
                       self.steps, self.stopped, theory=self.theory, jacobian=self.jacobian)
