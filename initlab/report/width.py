"""Width as an axis: microsoft/mup's coord check, read from a sweep's records.

For a sweep that varies model.width, `coord_table` is the tidy table of mup's `get_coord_data`:
per run (its other swept keys, its width and seed), recorded step and layer, `l1` = the layer's
pre-activations' mean |value| over that step's batch (the `preact_l1` record, measured in the
forward pass of the step, before its update: mup's t = step + 1). `slopes` fits, for each
configuration of the other swept keys, each step and each layer, log(l1) (mean over seeds) on
log(width): 0 when the layer's scale does not follow width (what muP is for), 1 when it grows
like the width. Past WIDTH_SLOPE either way the layer is `width_unstable` at that step: a
sweep-level finding, beside `outlier` and `trails`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from initlab.report.tables import SEED, Sweep

WIDTH = "model.width"
L1 = "preact_l1"
# |slope| of log l1 on log width past which a layer's scale follows width. Measured by
# `initlab experiment=coord_check` (widths 64-2048, Adam, MNIST; docs/parameterization.md): muP's layers
# stay within 0.06 once training has begun (0.07 at lr 0.001); the standard parameterization's readout is at
# 0.44-1.35 from step 1 on; at init every layer of the standard net is within 0.01 (the fit's own wander).
WIDTH_SLOPE = 0.25


def coord_table(sweep: Sweep) -> Optional[pd.DataFrame]:
    """Columns: the other swept keys, width, seed, step, layer, readout (the last layer), l1; None when the
    sweep does not vary model.width or its runs recorded no preact_l1 (runs of initlab before 0.3)."""
    if WIDTH not in sweep.swept or sweep.layers.empty:
        return None
    rows = sweep.layers[sweep.layers.metric == L1]
    if rows.empty:
        return None
    keys = other_keys(sweep)
    runs = sweep.runs.set_index("run")
    table = pd.DataFrame({
        **{k: rows.run.map(runs[k]).astype(str).to_numpy() for k in keys},
        "width": rows.run.map(runs[WIDTH]).astype(int).to_numpy(),
        "seed": rows.run.map(runs[SEED]).astype(int).to_numpy(),
        "step": rows.step.astype(int).to_numpy(), "layer": rows.layer.astype(int).to_numpy(),
        "l1": rows.value.astype(float).to_numpy()})
    last = rows.run.map(sweep.layers.groupby("run", observed=True).layer.max()).to_numpy()
    table.insert(len(table.columns) - 1, "readout", table.layer.to_numpy() == last)
    return table.sort_values([*keys, "step", "layer", "width", "seed"], ignore_index=True)


def other_keys(sweep: Sweep) -> list[str]:
    """The swept keys a coord check compares besides width (param, optim, ...): one row of panels each."""
    return [k for k in sweep.keys if k != WIDTH]


def slopes(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per (keys, step, layer): the widths fitted, the slope of log(mean l1 over seeds) on log(width) (least
    squares), and width_unstable (|slope| > WIDTH_SLOPE). A layer whose l1 is 0 or not finite at some width
    (a dead layer, a diverged run) has no slope (NaN) and is not flagged: its trouble is the diagnosis's."""
    means = table.groupby([*keys, "step", "layer", "readout", "width"], sort=True).l1.mean().reset_index()
    rows = []
    for group, part in means.groupby([*keys, "step", "layer", "readout"], sort=True):
        x, y = np.log(part.width.to_numpy(float)), part.l1.to_numpy(float)
        fit = len(x) >= 2 and np.all(np.isfinite(y)) and np.all(y > 0)
        slope = float(np.polyfit(x, np.log(y), 1)[0]) if fit else float("nan")
        rows.append((*group, int(part.width.min()), int(part.width.max()), len(x), slope))
    out = pd.DataFrame(rows, columns=[*keys, "step", "layer", "readout", "min_width", "max_width", "widths", "slope"])
    return out.assign(width_unstable=out.slope.abs() > WIDTH_SLOPE)


def findings(slope_table: pd.DataFrame, keys: list[str]) -> list[str]:
    """One line per configuration and layer flagged `width_unstable`: the first step it is, and its slope there."""
    flagged = slope_table[slope_table.width_unstable]
    lines = []
    for group, part in flagged.groupby([*keys, "layer"], sort=True):
        first = part.sort_values("step").iloc[0]
        config = ", ".join(f"{k}={v}" for k, v in zip(keys, group[:-1])) or "all runs"
        way = "grows" if first.slope > 0 else "shrinks"
        steps = ", ".join(str(s) for s in sorted(part.step))
        # muP's readout starts like width^-1/2 and is flat once it has learned (Tensor Programs V, Sec. 5)
        design = ("; at init only, by design: muP's readout divides its input by width_mult"
                  if "param=mup" in config and first.readout and first.slope < 0 and list(part.step) == [0] else "")
        lines.append(f"- {config}: layer {first.layer}{' (readout)' if first.readout else ''} is **width_unstable** "
                     f"from step {first.step}: its l1 {way} like width^{first.slope:.2f} over widths "
                     f"{first.min_width}-{first.max_width} (flagged at steps {steps}){design}")
    return lines


LR = "lr.value"


def transfer_keys(sweep: Sweep) -> list[str]:
    """The swept keys an lr-transfer study compares besides width and the rate (param, optim, ...)."""
    return [k for k in other_keys(sweep) if k != LR]


def transfer_table(sweep: Sweep) -> Optional[pd.DataFrame]:
    """For a sweep that varies model.width and lr.value: per configuration of the other swept keys (param,
    optim, ...), width and learning rate, the final training loss (mean over seeds; a run that diverged or
    failed counts as +inf: never the best) and the number of runs. None for other sweeps."""
    if WIDTH not in sweep.swept or LR not in sweep.swept:
        return None
    keys = transfer_keys(sweep)
    runs = sweep.runs[sweep.runs[WIDTH].notna() & sweep.runs[LR].notna()]  # a damaged run may say neither
    if runs.empty:
        return None
    loss = pd.to_numeric(runs.train_loss, errors="coerce").where(runs.status == "completed")
    frame = pd.DataFrame({**{k: runs[k].astype(str) for k in keys}, "width": runs[WIDTH].astype(int),
                          "lr": runs[LR].astype(float), "train_loss": loss.fillna(np.inf)})
    table = frame.groupby([*keys, "width", "lr"], sort=True).agg(
        train_loss=("train_loss", "mean"), runs=("train_loss", "size")).reset_index()
    return table


def best_rates(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per (keys, width): the learning rate of the lowest final training loss, that loss, and per (keys) the
    drift: log2 of the largest best rate over the smallest, in octaves (0: the best rate transfers)."""
    finite = table[np.isfinite(table.train_loss)]
    best = finite.loc[finite.groupby([*keys, "width"], sort=True).train_loss.idxmin()].reset_index(drop=True)
    best = best.rename(columns={"lr": "best_lr"})[[*keys, "width", "best_lr", "train_loss"]]
    octaves = np.log2(best.best_lr)
    drift = octaves.groupby([best[k] for k in keys] if keys else np.zeros(len(best))).transform(lambda o: o.max() - o.min())
    return best.assign(best_lr_log2=octaves, drift_octaves=drift)


@dataclass
class WidthTables:
    """A sweep's width analyses, made once for the report's page and its figures (None where they do not apply)."""

    coord_keys: list[str]
    coord: Optional[pd.DataFrame]
    slopes: Optional[pd.DataFrame]
    transfer_keys: list[str]
    transfer: Optional[pd.DataFrame]
    best: Optional[pd.DataFrame]


def analyse(sweep: Sweep) -> WidthTables:
    coord, keys = coord_table(sweep), other_keys(sweep)
    transfer, tkeys = transfer_table(sweep), transfer_keys(sweep)
    return WidthTables(keys, coord, None if coord is None else slopes(coord, keys),
                       tkeys, transfer, None if transfer is None else best_rates(transfer, tkeys))
