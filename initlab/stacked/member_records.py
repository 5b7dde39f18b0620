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
from initlab.train.recorder import table_of
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
    `predictions`, the layers table as theory_rows.with_predictions makes it, in one concatenation."""
    rows = list(eval_rows)
    first = first_recorded(index, eval_rows) if predictions is not None else None
    if first is not None:
        rows += theory_rows.prediction_rows(predictions, *first)
    layers = pd.concat([table_of(values, index, metrics), records.layers_frame(rows)],
                       ignore_index=True)  # both typed as records.LAYER_TYPES
    parts = [records.curves_frame(curves)] + [records.curves_of(*s) for s in series]
    curves = pd.concat(parts, ignore_index=True).sort_values(["metric", "step"], kind="stable", ignore_index=True)
    return layers, curves


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
