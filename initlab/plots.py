"""Seaborn figures of a Sweep. Each function reads only the sweep's tidy tables and saves one PNG.

Every figure colours init schemes the same way (`palette`), compares inits within a panel and
facets by the other swept keys, so a sweep over one key, or a single run, still gives a
sensible picture.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO notes would land in Hydra's job log

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from initlab.report import Sweep  # noqa: E402

FLOOR = 1e-12  # a norm of exactly 0 (a dead network) is drawn here on log axes
MAX_FACETS = 12
WRAP = 6
SHORT = {"model.depth": "depth", "model.width": "width", "model.activation": "activation",
         "lr.value": "lr", "trainer.seed": "seed", "optim.momentum": "momentum"}


def _short(key: str) -> str:
    return SHORT.get(key, key)


def _facet_keys(sweep: Sweep) -> list[str]:
    return [k for k in sweep.keys if k != "init"]


def _facets(table: pd.DataFrame, keys: list[str]) -> pd.Series:
    """A readable facet label per row ('depth=10, lr=0.1'), or one shared label."""
    if not keys:
        return pd.Series("all runs", index=table.index)
    return table[keys].astype(str).apply(lambda r: ", ".join(f"{_short(k)}={v}" for k, v in zip(keys, r)), axis=1)


def _order(table: pd.DataFrame, keys: list[str], labels: pd.Series) -> list[str]:
    # Facets in the order of their (numeric where possible) key values, not alphabetically.
    frame = table[keys].copy() if keys else pd.DataFrame(index=table.index)
    frame["_label"] = labels
    frame = frame.drop_duplicates("_label")
    for key in keys:
        frame[key] = pd.to_numeric(frame[key], errors="coerce").fillna(0) if pd.to_numeric(
            frame[key], errors="coerce").notna().all() else frame[key].astype(str)
    return list(frame.sort_values(keys)["_label"] if keys else frame["_label"])[:MAX_FACETS]


def _grid(n_panels: int, rows_per_facet: int = 1, width: float = 4.2, height: float = 3.2):
    cols = min(n_panels, WRAP)
    wraps = math.ceil(n_panels / cols)
    # At least ~9 in wide, so a single panel still has room for its title and the legend.
    fig, axes = plt.subplots(wraps * rows_per_facet, cols, figsize=(max(width * cols, 9), height * wraps * rows_per_facet),
                             squeeze=False, constrained_layout=True)
    return fig, axes, cols


def _legend(fig, axes, title: str = "init") -> None:
    handles, labels = [], []
    for ax in axes.flat:
        h, l = ax.get_legend_handles_labels()
        for hh, ll in zip(h, l):
            if ll not in labels:
                handles.append(hh), labels.append(ll)
        if ax.get_legend():
            ax.get_legend().remove()
    if handles:
        fig.legend(handles, labels, title=title, loc="outside right upper", frameon=False)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(sweep: Sweep, palette: dict, path: Path) -> Path:
    """Training loss (binned over steps) and test accuracy per epoch: mean and ±1 sd over seeds."""
    keys = _facet_keys(sweep)
    curves = sweep.curves
    loss = curves[curves.metric == "train_loss"].copy()
    last = int(loss.step.max()) if len(loss) else 1
    width = max(1, (last + 1) // 60)
    loss["step"] = (loss.step // width) * width
    loss = loss.groupby(["run", "step"], observed=True).agg(value=("value", "mean")).reset_index()
    acc = curves[curves.metric == "test_accuracy"][["run", "step", "value"]].assign(value=lambda t: 100 * t.value)
    runs = sweep.runs.set_index("run")
    labels = _facets(sweep.runs, keys)
    facet_of = dict(zip(sweep.runs.run, labels))
    order = _order(sweep.runs, keys, labels)
    fig, axes, cols = _grid(len(order), rows_per_facet=2)
    for i, facet in enumerate(order):
        r, c = 2 * (i // cols), i % cols
        for row, (table, ylabel, log) in enumerate(((loss, "training loss (batch mean)", True),
                                                      (acc, "test accuracy (%)", False))):
            ax = axes[r + row, c]
            data = table[table.run.map(facet_of) == facet].assign(init=lambda t: t.run.map(runs["init"]))
            data = data.replace([np.inf, -np.inf], np.nan).dropna(subset=["value"])
            if len(data):
                sns.lineplot(data=data, x="step", y="value", hue="init", palette=palette, errorbar="sd", ax=ax,
                             marker="o" if row == 1 and data.step.nunique() < 30 else None)
            ax.set(xlabel="optimizer step", ylabel=ylabel, title=facet if row == 0 else None)
            if log and len(data) and (data.value > 0).all():
                ax.set_yscale("log")
    _hide_unused(axes, len(order), cols, rows_per_facet=2)
    _legend(fig, axes)
    fig.suptitle("Training loss and test accuracy (mean over seeds, band ±1 sd)")
    return _save(fig, path)


def _hide_unused(axes, n: int, cols: int, rows_per_facet: int = 1) -> None:
    for i in range(n, axes.shape[1] * (axes.shape[0] // rows_per_facet)):
        for row in range(rows_per_facet):
            axes[rows_per_facet * (i // cols) + row, i % cols].set_visible(False)


def _moments(table: pd.DataFrame) -> pd.DataFrame:
    """Per run, the recorded steps at the start, early (~10% in) and at the end of training."""
    picks = []
    for run, steps in table.groupby("run", observed=True).step:
        unique = np.sort(steps.unique())
        early = unique[np.abs(unique - 0.1 * unique[-1]).argmin()]
        for name, step in (("start", unique[0]), ("early", early), ("end", unique[-1])):
            picks.append((run, name, step))
    return pd.DataFrame(picks, columns=["run", "moment", "step"])


def gradient_flow(sweep: Sweep, palette: dict, path: Path, metric: str = "weight_grad_norm",
                  ylabel: str = "weight-gradient L2 norm") -> Path:
    """Per-layer gradient norm against layer index at the start, early and end of training (log scale)."""
    keys = _facet_keys(sweep)
    table = sweep.layers[sweep.layers.metric == metric]
    moments = _moments(table)
    data = table.merge(moments, on=["run", "step"])
    data["value"] = data.value.clip(lower=FLOOR)
    labels = _facets(sweep.runs, keys)
    facet_of = dict(zip(sweep.runs.run, labels))
    order = _order(sweep.runs, keys, labels)
    names = ("start", "early", "end")
    fig, axes = plt.subplots(len(order), 3, figsize=(13, 3.2 * len(order)), squeeze=False, constrained_layout=True)
    for i, facet in enumerate(order):
        for j, moment in enumerate(names):
            ax = axes[i, j]
            part = data[(data.run.map(facet_of) == facet) & (data.moment == moment)]
            if len(part):
                sns.lineplot(data=part.astype({"init": str}), x="layer", y="value", hue="init", palette=palette,
                             errorbar="sd", marker="o", ax=ax)
                ax.set_yscale("log")
                steps = sorted(part.step.unique())
                at = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}–{steps[-1]}"
            else:
                at = "no data"
            ax.set(xlabel="layer (0 = first, last = output)", ylabel=ylabel if j == 0 else None,
                   title=f"{facet}: {moment} ({at})" if keys else f"{moment} ({at})")
            ax.xaxis.get_major_locator().set_params(integer=True)
    _legend(fig, axes)
    fig.suptitle(f"Gradient flow: {ylabel} per layer (log scale; exactly 0 is drawn at {FLOOR:g})")
    return _save(fig, path)


def gradient_heatmap(sweep: Sweep, path: Path, metric: str = "weight_grad_norm") -> Path:
    """Layer x step heatmap of the gradient norm, median over seeds, one panel per configuration."""
    keys = [k for k in sweep.keys]  # init and every other swept key: one panel each
    table = sweep.layers[sweep.layers.metric == metric]
    labels = _facets(sweep.runs, keys)
    facet_of = dict(zip(sweep.runs.run, labels))
    order = _order(sweep.runs, keys, labels)
    grids = {}
    for facet in order:
        part = table[table.run.map(facet_of) == facet]
        grids[facet] = part.pivot_table(index="layer", columns="step", values="value", aggfunc="median",
                                        observed=True).clip(lower=FLOOR)
    stacked = [g.stack() for g in grids.values() if g.size]
    values = pd.concat(stacked) if stacked else pd.Series([1.0])
    finite = values[np.isfinite(values)]
    norm = LogNorm(vmin=max(finite.min(), FLOOR), vmax=max(finite.max(), FLOOR * 10))
    fig, axes, cols = _grid(len(order), width=4.4, height=3.0)
    image = None
    for i, facet in enumerate(order):
        ax, grid = axes[i // cols, i % cols], grids[facet]
        if grid.size:
            steps, layers = grid.columns.to_numpy(), grid.index.to_numpy()
            image = ax.pcolormesh(steps, layers, grid.to_numpy(), norm=norm, cmap="viridis", shading="nearest")
        ax.set(xlabel="optimizer step", ylabel="layer", title=facet)
        ax.yaxis.get_major_locator().set_params(integer=True)
    _hide_unused(axes, len(order), cols)
    if image is not None:
        fig.colorbar(image, ax=axes, label="weight-gradient L2 norm (log)", shrink=0.8)
    fig.suptitle("Weight-gradient norm per layer over training (median over seeds)")
    return _save(fig, path)


def accuracy_heatmap(sweep: Sweep, path: Path) -> Path:
    """Final test accuracy (mean over seeds) over init x each other swept key."""
    runs = sweep.runs.assign(acc=lambda t: 100 * pd.to_numeric(t.test_accuracy, errors="coerce"))
    rows_key = "init" if "init" in sweep.keys or "init" in runs else (sweep.keys or ["status"])[0]
    others = [k for k in sweep.keys if k != rows_key] or [None]
    fig, axes = plt.subplots(1, len(others), figsize=(max(5, 1.3 * 5) * len(others), 0.55 * runs[rows_key].nunique() + 2),
                             squeeze=False, constrained_layout=True)
    for ax, other in zip(axes.flat, others):
        column = other or "_all"
        data = runs.assign(_all="all runs") if other is None else runs
        grid = data.pivot_table(index=rows_key, columns=column, values="acc", aggfunc="mean", dropna=False)
        sns.heatmap(grid, annot=True, fmt=".1f", cmap="rocket", vmin=0, vmax=100, ax=ax,
                    cbar_kws={"label": "final test accuracy (%)"})
        # An empty cell says why: its runs diverged, failed or never finished.
        states = data.pivot_table(index=rows_key, columns=column, values="status", dropna=False,
                                  aggfunc=lambda s: "/".join(sorted(set(s) - {"completed"})))
        for i, row in enumerate(grid.index):
            for j, col in enumerate(grid.columns):
                if pd.isna(grid.loc[row, col]) and isinstance(states.loc[row, col], str) and states.loc[row, col]:
                    ax.text(j + 0.5, i + 0.5, states.loc[row, col], ha="center", va="center", fontsize=8, color="0.3")
        ax.set(xlabel=_short(other) if other else "", ylabel=_short(rows_key))
    fig.suptitle("Final test accuracy (%), mean over seeds")
    return _save(fig, path)


def dead_units(sweep: Sweep, palette: dict, path: Path) -> Path:
    """Fraction of units that never activate on the test set, per layer, at the end of training."""
    keys = _facet_keys(sweep)
    dead = sweep.layers[sweep.layers.metric == "eval_dead_fraction"]
    last = dead.groupby("run", observed=True).step.transform("max")
    dead = dead[dead.step == last].astype({"init": str})
    labels = _facets(sweep.runs, keys)
    facet_of = dict(zip(sweep.runs.run, labels))
    order = _order(sweep.runs, keys, labels)
    fig, axes, cols = _grid(len(order), width=4.6, height=3.2)
    for i, facet in enumerate(order):
        ax = axes[i // cols, i % cols]
        part = dead[dead.run.map(facet_of) == facet]
        if len(part):
            sns.barplot(data=part, x="layer", y="value", hue="init", palette=palette, errorbar=None, ax=ax)
        if not len(part) or part.value.max() == 0:
            ax.text(0.5, 0.5, "no dead units", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set(xlabel="layer (last = output)", ylabel="dead-unit fraction", ylim=(0, 1.05), title=facet)
        if part.layer.nunique() > 12:
            for k, label in enumerate(ax.get_xticklabels()):
                label.set_visible(k % 5 == 0)
    _hide_unused(axes, len(order), cols)
    _legend(fig, axes)
    fig.suptitle("Dead units at the end of training (output 0 for every test sample), mean over seeds")
    return _save(fig, path)


def all_figures(sweep: Sweep, palette: dict, folder: Path) -> dict[str, Path]:
    """Every figure of a report, by name; none when no run has records (all unfinished or corrupt)."""
    if sweep.layers.empty and sweep.curves.empty:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "Training curves": training_curves(sweep, palette, folder / "curves.png"),
        "Gradient flow (weights)": gradient_flow(sweep, palette, folder / "gradient_flow.png"),
        "Gradient flow (back-propagated dL/dz)": gradient_flow(
            sweep, palette, folder / "backprop_flow.png", "backprop_grad_norm", "back-propagated gradient norm ‖dL/dz‖"),
        "Gradient-norm heatmap": gradient_heatmap(sweep, folder / "grad_heatmap.png"),
        "Final accuracy": accuracy_heatmap(sweep, folder / "accuracy_heatmap.png"),
        "Dead units": dead_units(sweep, palette, folder / "dead_units.png"),
    }
