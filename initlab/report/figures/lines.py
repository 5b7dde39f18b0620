"""Line and bar figures of a Sweep: training curves, gradient flow, dead units.

Each function reads only the sweep's tidy tables, sums runs up with pandas (facets.band) and
draws with plain matplotlib, so a 1,024-run sweep draws in seconds. Every figure colours init
schemes the same way, compares inits within a panel and gives one panel per value of the other
swept keys: all of them, or (facets.choose) the worst and best, saying so on the figure.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from initlab.report.figures import facets as fx
from initlab.report.figures.facets import Drawn
from initlab.report.figures.toolkit import (FLOOR, draw_bands, grid, hide_unused, legend, log_scale, notes, panel_keys,
                                           panels, save, say_in_panel, title, title_lines, with_init)
from initlab.report.tables import Sweep


def training_curves(sweep: Sweep, palette: dict, path: Path) -> Drawn:
    """Training loss (binned over steps) and test accuracy per epoch, per init."""
    keys = panel_keys(sweep)
    chosen = fx.choose(sweep.runs, keys, what=f"panels ({', '.join(map(fx.short, keys))})")
    curves = sweep.curves
    loss = curves[curves.metric == "train_loss"][["run", "step", "value"]]
    # Counted before binning, whose mean would hide a NaN among a bin's finite losses.
    lost = with_init(loss[~np.isfinite(loss.value.to_numpy(dtype=float))], sweep, chosen)
    last = int(loss.step.max()) if len(loss) else 1
    width = max(1, (last + 1) // 60)
    loss = loss.assign(step=(loss.step // width) * width).groupby(["run", "step"], observed=True, as_index=False).value.mean()
    acc = curves[curves.metric == "test_accuracy"][["run", "step", "value"]].assign(value=lambda t: 100 * t.value)
    loss, acc = with_init(loss, sweep, chosen), with_init(acc, sweep, chosen)
    bands = [fx.band(loss, ["facet", "init", "step"]), fx.band(acc, ["facet", "init", "step"])]
    # A run that diverged before its first evaluation has a loss curve and no test accuracy: say so.
    without = len(set(loss.run) - set(acc.run[acc.value.map(math.isfinite)]))
    gap = (f"accuracy panels without the {without} run{'s' if without > 1 else ''} that diverged before "
           f"{'their' if without > 1 else 'its'} first evaluation") if without else ""
    note = notes(chosen.note, fx.not_finite(lost, "a training loss"), gap)
    fig, axes, cols = grid(len(chosen.shown), rows_per_facet=2, title_lines=title_lines(note))
    for i, facet in enumerate(chosen.shown):
        r, c = 2 * (i // cols), i % cols
        # one step axis for both rows: an evaluation or two (a run of an epoch) sit where training ends
        axes[r + 1, c].sharex(axes[r, c])
        for row, (data, ylabel) in enumerate(zip(bands, ("training loss (batch mean)", "test accuracy (%)"))):
            ax, part = axes[r + row, c], data[data.facet == facet]
            draw_bands(ax, part, "step", palette, marker=row == 1 and part.step.nunique() < 30)
            ax.set(xlabel="optimizer step", ylabel=ylabel, title=facet if row == 0 else None)
            if row == 0 and len(part) and (part.center > 0).all():
                log_scale(ax)
            if row == 0 and len(part) and part.step.max() < last:  # every run here ended early (diverged):
                ax.set_xlim(-0.05 * last, 1.05 * last)  # on the training's whole length, which says so
            if not len(part):
                say_in_panel(ax, "no finite values")
    hide_unused(axes, len(chosen.shown), cols, rows_per_facet=2)
    legend(fig, palette, sorted(set(loss.init)))
    title(fig, f"Training loss and test accuracy ({fx.band_words(loss, ['facet', 'init', 'step'])})", note)
    return save(fig, path, note)


def moments(table: pd.DataFrame) -> pd.DataFrame:
    """Per run, the recorded steps at the start, early (~10% in) and at the end of training."""
    steps = table[["run", "step"]].drop_duplicates()
    first = steps.groupby("run", observed=True).step.transform("min")
    last = steps.groupby("run", observed=True).step.transform("max")
    distance = (steps.step - (first + 0.1 * (last - first))).abs()
    early = steps.loc[distance.groupby(steps.run, observed=True).idxmin()]
    ends = steps.groupby("run", observed=True).step.agg(["min", "max"]).reset_index()
    picks = pd.concat([ends[["run", "min"]].rename(columns={"min": "step"}).assign(moment="start"),
                       early[["run", "step"]].assign(moment="early"),
                       ends[["run", "max"]].rename(columns={"max": "step"}).assign(moment="end")])
    return picks


def gradient_flow(sweep: Sweep, palette: dict, path: Path, metric: str = "weight_grad_norm",
                  ylabel: str = "weight-gradient L2 norm") -> Drawn:
    """Per-layer gradient norm against layer index at the start, early and end of training (log scale)."""
    keys = panel_keys(sweep)
    chosen = fx.choose(sweep.runs, keys, what=f"rows ({', '.join(map(fx.short, keys))})")
    table = sweep.layers[sweep.layers.metric == metric][["run", "step", "layer", "value"]]
    data = table.merge(moments(table), on=["run", "step"])
    data = with_init(data.assign(value=data.value.clip(lower=FLOOR)), sweep, chosen)
    summed = fx.band(data, ["facet", "moment", "init", "layer"])
    spans = data.groupby(["facet", "moment"]).step.agg(["min", "max"])
    names = ("start", "early", "end")
    note = notes(chosen.note, fx.not_finite(data, "a value", "moment",
                                           {"start": "at the start", "early": "early", "end": "at the end"}))
    fig, axes = panels(len(chosen.shown), 3, 3.6, 2.6, title_lines=title_lines(note))
    for i, facet in enumerate(chosen.shown):
        for j, moment in enumerate(names):
            ax = axes[i, j]
            part = summed[(summed.facet == facet) & (summed.moment == moment)]
            if (facet, moment) in spans.index:
                lo, hi = spans.loc[(facet, moment)]
                at = f"step {lo}" if lo == hi else f"steps {lo}–{hi}"
            else:
                at = "no data"
            if len(part):
                draw_bands(ax, part, "layer", palette, marker=True)
                log_scale(ax)
            elif at != "no data":  # recorded, but every value overflowed (the note counts the runs)
                say_in_panel(ax, "no finite values")
            ax.set(xlabel="layer (0 = first, last = output)", ylabel=ylabel if j == 0 else None,
                   title=f"{facet}: {moment} ({at})" if keys else f"{moment} ({at})")
            ax.xaxis.get_major_locator().set_params(integer=True)
    legend(fig, palette, sorted(set(data.init)))
    title(fig, f"Gradient flow: {ylabel} per layer ({fx.band_words(data, ['facet', 'moment', 'init', 'layer'])}; "
               f"log scale, exactly 0 drawn at {FLOOR:g})", note)
    return save(fig, path, note)


def dead_units(sweep: Sweep, palette: dict, path: Path) -> Drawn:
    """Fraction of units that never activate on the test set, per layer, at the end of training."""
    keys = panel_keys(sweep)
    chosen = fx.choose(sweep.runs, keys, what=f"panels ({', '.join(map(fx.short, keys))})")
    dead = sweep.layers[sweep.layers.metric == "eval_dead_fraction"][["run", "step", "layer", "value"]]
    dead = dead[dead.step == dead.groupby("run", observed=True).step.transform("max")]
    dead = with_init(dead, sweep, chosen)
    mean = dead.groupby(["facet", "init", "layer"], observed=True).value.mean().reset_index()
    inits = sorted(set(dead.init))
    fig, axes, cols = grid(len(chosen.shown), title_lines=title_lines(chosen.note))
    for i, facet in enumerate(chosen.shown):
        ax = axes[i // cols, i % cols]
        part = mean[mean.facet == facet]
        width = 0.8 / max(1, len(inits))
        for k, init in enumerate(inits):
            bars = part[part.init == init]
            ax.bar(bars.layer - 0.4 + width * (k + 0.5), bars.value, width=width, color=palette.get(init, "0.3"))
        if not len(part) or part.value.max() == 0:
            say_in_panel(ax, "no dead units")
        ax.set(xlabel="layer (last = output)", ylabel="dead-unit fraction", ylim=(0, 1.05), title=facet)
        ax.xaxis.get_major_locator().set_params(integer=True)
    hide_unused(axes, len(chosen.shown), cols)
    legend(fig, palette, inits)
    title(fig, "Dead units at the end of training (output 0 for every test sample), mean over runs", chosen.note)
    return save(fig, path, chosen.note)
