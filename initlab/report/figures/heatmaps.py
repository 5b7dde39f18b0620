"""Heatmap figures of a Sweep: the views that scale to large grids.

- gradient_heatmap: layer x step of the gradient norm, one panel per configuration (or the worst
  and best, said on the figure);
- accuracy_heatmap: final accuracy over init x each other swept key;
- signature_heatmap: the vanishing/exploding signature, log10 of the first-to-last layer
  weight-gradient norm ratio at the start and at the end, over the grid's two main axes;
- diagnosis_heatmap: the most frequent diagnosis per cell of that grid, with its count.

Every cell says what it sums up (the title names the keys pooled); an empty cell says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.patches import Patch

from initlab.report.figures import facets as fx
from initlab.report.figures.facets import Drawn
from initlab.report.figures.toolkit import FLOOR, grid, hide_unused, notes, save, say_in_panel, title, title_lines
from initlab.report.tables import Sweep

MAX_PANEL_VALUES = 6  # a third swept key with this many values or fewer gets a panel per value
# One colour per diagnosis label (and run status), the same in every report: healthy green,
# problems in hues a reader tells apart; a label added later gets a pastel.
LABEL_COLOURS = {
    "healthy": "#8fd18a", "not_learning": "#c9c9c9", "vanishing": "#6b9bd1", "exploding": "#f2a05c",
    "diverged": "#e05a4f", "failed": "#5a5a5a", "stuck": "#a77fc7", "symmetric": "#f2d45c",
    "init_too_large": "#e589b8", "updates_too_small": "#8ed3d6", "dead_units": "#b08a6b",
    "saturation": "#c7c76b", "unfinished": "#ffffff", "corrupt": "#7a4a8a", "init_too_small": "#c6cbee",
}


NORM_COLOURS = plt.get_cmap("viridis").with_extremes(bad="white")  # not finite: white, as the note says


def gradient_heatmap(sweep: Sweep, path: Path, metric: str = "weight_grad_norm") -> Drawn:
    """Layer x step heatmap of the gradient norm, median over a configuration's runs, one panel each."""
    keys = list(sweep.keys)  # init and every other swept key: one panel each
    chosen = fx.choose(sweep.runs, keys)
    table = sweep.layers[sweep.layers.metric == metric][["run", "step", "layer", "value"]]
    table = table.assign(facet=table.run.map(chosen.label_of).astype(object))
    table = table[table.facet.isin(chosen.shown)]
    runs_per_panel = table.groupby("facet").run.nunique().max() if len(table) else 0
    medians = table.groupby(["facet", "layer", "step"]).value.median().clip(lower=FLOOR)
    finite = medians[np.isfinite(medians)]
    # A diverged run's overflowed (inf) or NaN norms have no colour on a log scale: blank cells, said so.
    blank = int((~np.isfinite(medians)).sum())
    note = notes(chosen.note, f"{blank} cell{'s' if blank > 1 else ''} in white, whose norm is not finite "
                              f"(overflow or NaN)" if blank else "")
    norm = LogNorm(vmin=max(finite.min(), FLOOR) if len(finite) else FLOOR,
                   vmax=max(finite.max(), FLOOR * 10) if len(finite) else 1.0)
    fig, axes, cols = grid(len(chosen.shown), title_lines=title_lines(note))
    image = None
    for i, facet in enumerate(chosen.shown):
        ax = axes[i // cols, i % cols]
        if facet in medians.index.get_level_values(0):
            cells = medians.loc[facet].unstack("step")
            image = ax.pcolormesh(cells.columns.to_numpy(), cells.index.to_numpy(), cells.to_numpy(), norm=norm,
                                  cmap=NORM_COLOURS, shading="nearest")
        else:
            say_in_panel(ax, "no records")
        ax.set(xlabel="optimizer step", ylabel="layer", title=facet)
        ax.yaxis.get_major_locator().set_params(integer=True)
    hide_unused(axes, len(chosen.shown), cols)
    if image is not None:  # in the space the line figures keep for their legend
        x, top = fig._initlab_legend_at
        bar = fig.add_axes((x + 0.01, 0.25, 0.015, top - 0.3))
        fig.colorbar(image, cax=bar, label="weight-gradient L2 norm (log)")
    summed = "median over the panel's runs" if runs_per_panel > 1 else "one run per panel"
    title(fig, f"Weight-gradient norm per layer over training ({summed})", note)
    return save(fig, path, note)


def accuracy_heatmap(sweep: Sweep, path: Path) -> Drawn:
    """Final test accuracy (mean over seeds) over init x each other swept key."""
    runs = sweep.runs.assign(acc=lambda t: 100 * pd.to_numeric(t.test_accuracy, errors="coerce"))
    rows_key = "init" if "init" in sweep.keys or "init" in runs else (sweep.keys or ["status"])[0]
    others = [k for k in sweep.keys if k != rows_key] or [None]
    fig, axes = plt.subplots(1, len(others), figsize=(max(5, 1.3 * 5) * len(others), 0.55 * runs[rows_key].nunique() + 2),
                             squeeze=False, constrained_layout=True)
    for ax, other in zip(axes.flat, others):
        column = other or "_all"
        data = runs.assign(_all="all runs") if other is None else runs
        cells = data.pivot_table(index=rows_key, columns=column, values="acc", aggfunc="mean", dropna=False)
        sns.heatmap(cells, annot=True, fmt=".1f", cmap="rocket", vmin=0, vmax=100, ax=ax,
                    cbar_kws={"label": "final test accuracy (%)"})
        empty_cells_say_why(ax, data, rows_key, column, cells)
        pooled = [fx.short(k) for k in sweep.keys if k not in (rows_key, other)]
        ax.set(xlabel=fx.short(other) if other else "", ylabel=fx.short(rows_key),
               title=f"mean over {', '.join(pooled)} too" if pooled else None)
        ax.tick_params(axis="y", rotation=0)  # row names read across, as in the other heatmaps
    title(fig, "Final test accuracy (%), mean over seeds")
    return save(fig, path)


def empty_cells_say_why(ax, data: pd.DataFrame, rows: str, columns: str, cells: pd.DataFrame,
                        extra: Optional[pd.DataFrame] = None) -> None:
    """An empty cell of a heatmap names the statuses of its runs (diverged, failed, unfinished),
    or `extra`'s reason when its runs completed."""
    states = data.pivot_table(index=rows, columns=columns, values="status", dropna=False,
                              aggfunc=lambda s: "/".join(sorted(set(s) - {"completed"})))
    for i, row in enumerate(cells.index):
        for j, col in enumerate(cells.columns):
            state = states.loc[row, col] if row in states.index and col in states.columns else None
            if not state and extra is not None and row in extra.index and col in extra.columns:
                state = extra.loc[row, col]
            if pd.isna(cells.loc[row, col]) and isinstance(state, str) and state:
                ax.text(j + 0.5, i + 0.5, state, ha="center", va="center", fontsize=8, color="0.3")


@dataclass
class Layout:
    """The grid of a sweep's two main axes: rows, columns, a panel per value of a third key, pooled keys."""

    rows: str
    columns: Optional[str]
    panels: Optional[str]
    pooled: list[str]

    def words(self) -> str:
        pooled = [fx.short(k) for k in self.pooled]
        return "median over seeds" + (f" and over {', '.join(pooled)}" if pooled else "")


def layout(sweep: Sweep) -> Layout:
    """Rows: init (else the first swept key); columns: the other swept key with the most values;
    a panel per value of a third key with at most MAX_PANEL_VALUES values; the rest pooled."""
    keys = sweep.keys
    rows = "init" if "init" in sweep.runs and ("init" in keys or not keys) else (keys[0] if keys else "status")
    others = [k for k in keys if k != rows]
    counts = {k: sweep.runs[k].nunique() for k in others}
    columns = max(others, key=lambda k: (counts[k], -others.index(k))) if others else None
    rest = [k for k in others if k != columns]
    panels = rest[0] if rest and counts[rest[0]] <= MAX_PANEL_VALUES else None
    return Layout(rows, columns, panels, [k for k in rest if k != panels])


def _panels(runs: pd.DataFrame, grid_: Layout) -> list[tuple[str, pd.DataFrame]]:
    if grid_.panels is None:
        return [("", runs)]
    values = sorted(runs[grid_.panels].dropna().unique(), key=lambda v: (pd.to_numeric(v, errors="coerce"), str(v)))
    return [(f"{fx.short(grid_.panels)}={v}", runs[runs[grid_.panels] == v]) for v in values]


def _cells(runs: pd.DataFrame, grid_: Layout, values: str, aggfunc) -> pd.DataFrame:
    column = grid_.columns or "_all"
    data = runs.assign(_all="all runs") if grid_.columns is None else runs
    return data.pivot_table(index=grid_.rows, columns=column, values=values, aggfunc=aggfunc, dropna=False)


def signatures(sweep: Sweep) -> pd.DataFrame:
    """Per run: log10 of the first layer's weight-gradient norm over the last layer's, at the first
    and the last recorded step (< 0: the gradient vanishes toward the input; > 0: it explodes)."""
    norms = sweep.layers[sweep.layers.metric == "weight_grad_norm"][["run", "step", "layer", "value"]]
    norms = norms.assign(run=norms.run.astype(object))
    by_run = norms.groupby("run")
    first, last = by_run.step.transform("min"), by_run.step.transform("max")
    top = by_run.layer.transform("max")
    out = {}
    for name, at in (("signature_start", norms.step == first), ("signature_end", norms.step == last)):
        part = norms[at]
        inner = part[part.layer == 0].set_index("run").value
        outer = part[part.layer == top[at]].set_index("run").value
        outer = outer.reindex(inner.index)
        with np.errstate(divide="ignore", invalid="ignore"):  # a norm of exactly 0 has no ratio: "0 gradient"
            ratio = np.log10(inner / outer)
        out[name] = ratio.where(np.isfinite(ratio))
        out[name.replace("signature", "zero")] = (inner == 0) | (outer == 0)
    return pd.DataFrame(out).rename_axis("run").reset_index()


def signature_heatmap(sweep: Sweep, path: Path) -> Drawn:
    """log10(first-layer / last-layer weight-gradient norm) at the start and the end, over the grid."""
    grid_ = layout(sweep)
    runs = sweep.runs.merge(signatures(sweep), on="run", how="left")
    panels = _panels(runs, grid_)
    cells = {(p, moment): _cells(part, grid_, f"signature_{moment}", "median") for p, part in panels
             for moment in ("start", "end")}
    finite = np.concatenate([c.to_numpy(dtype=float).ravel() for c in cells.values()])
    finite = finite[np.isfinite(finite)]
    limit = max(1.0, float(np.abs(finite).max())) if len(finite) else 1.0
    n_rows = runs[grid_.rows].nunique()
    n_cols = max(1, runs[grid_.columns].nunique()) if grid_.columns else 1
    fig, axes = plt.subplots(2, len(panels), figsize=(max(5.5, 1.1 * n_cols + 3) * len(panels), 2 * (0.5 * n_rows + 1.6)),
                             squeeze=False, constrained_layout=True)
    for j, (panel, part) in enumerate(panels):
        for i, moment in enumerate(("start", "end")):
            ax, data = axes[i, j], cells[(panel, moment)]
            sns.heatmap(data, annot=True, fmt=".1f", cmap="RdBu_r", vmin=-limit, vmax=limit, center=0, ax=ax,
                        cbar=j == len(panels) - 1, cbar_kws={"label": "log10(first / last layer)"})
            zero = _cells(part, grid_, f"zero_{moment}", "mean")
            empty_cells_say_why(ax, part.assign(_all="all runs"), grid_.rows, grid_.columns or "_all", data,
                                extra=zero.map(lambda z: "0 gradient" if z and z >= 0.5 else ""))
            ax.set(xlabel=fx.short(grid_.columns) if grid_.columns else "", ylabel=fx.short(grid_.rows),
                   title=", ".join(filter(None, [panel, f"at the {moment} of training"])))
            ax.tick_params(axis="y", rotation=0)  # row names read across, as in the other heatmaps
    title(fig, "Vanishing / exploding signature: log10 of the weight-gradient norm of the first layer over the last "
               f"({grid_.words()})\n< 0 (blue): the gradient shrinks toward the input; > 0 (red): it grows")
    return save(fig, path)


def diagnosis_heatmap(sweep: Sweep, path: Path) -> Drawn:
    """The most frequent diagnosis in each cell of the grid, with how many of its runs have it."""
    grid_ = layout(sweep)
    runs = sweep.runs.assign(label=sweep.runs.diagnosis.fillna(sweep.runs.status).astype(str))
    labels = sorted(runs.label.unique(), key=lambda s: (s != "healthy", s))
    spare = iter(sns.color_palette("Pastel1", 9) * 3)
    colours = {s: LABEL_COLOURS.get(s) or next(spare) for s in labels}
    panels = _panels(runs, grid_)
    n_rows = runs[grid_.rows].nunique()
    n_cols = max(1, runs[grid_.columns].nunique()) if grid_.columns else 1
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.5, 1.5 * n_cols + 2.5) * len(panels), 0.6 * n_rows + 2),
                             squeeze=False, constrained_layout=True)

    def top(labels_: pd.Series) -> str:
        counts = labels_.value_counts()
        return f"{counts.index[0]}\n{counts.iloc[0]}/{len(labels_)}" if len(counts) else ""

    shown: set[str] = set()
    for ax, (panel, part) in zip(axes.flat, panels):
        text = _cells(part, grid_, "label", top)
        shown |= {s.split("\n")[0] for s in text.to_numpy().ravel() if isinstance(s, str) and s}
        codes = text.map(lambda s: labels.index(s.split("\n")[0]) if isinstance(s, str) and s else np.nan)
        sns.heatmap(codes.astype(float), annot=text.fillna("").to_numpy(), fmt="", cbar=False, ax=ax, vmin=-0.5,
                    vmax=len(labels) - 0.5, cmap=ListedColormap([colours[s] for s in labels]), linewidths=0.5,
                    annot_kws={"fontsize": 8})
        ax.set(xlabel=fx.short(grid_.columns) if grid_.columns else "", ylabel=fx.short(grid_.rows), title=panel or None)
        ax.tick_params(axis="y", rotation=0)  # row names read across, as in the other heatmaps
    drawn = [s for s in labels if s in shown]  # a label no cell has as its most frequent is not drawn
    fig.legend([Patch(color=colours[s]) for s in drawn], drawn, title="diagnosis", loc="outside right center",
               frameon=False)
    pooled = [fx.short(k) for k in grid_.pooled]
    title(fig, "Diagnosis per cell: the most frequent label and how many of the cell's runs have it"
               + (f" (pooled over seeds and {', '.join(pooled)})" if pooled else " (over seeds)"))
    return save(fig, path)

