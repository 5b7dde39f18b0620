"""The width figures (report/width.py's tables): the coord check's (microsoft/mup's `plot_coord_data`:
per configuration a row, per step a panel, l1 against width on log-log axes, a line per layer, the mean
over seeds and the seeds' range as a band, each layer's fitted slope written in its panel), and the
learning-rate transfer's (final training loss against the rate, a curve per width)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from initlab.report.figures import toolkit as tk
from initlab.report.figures.facets import Drawn

CUT = 20.0  # lr_transfer's y axis: up to this multiple of a panel's worst best loss
MAX_STEPS = 6  # panels per row; more recorded steps: the first, the last and evenly spaced ones between
MAX_ROWS = 8  # configurations drawn (rows of the coord check, panels of lr transfer): past it, those that follow width most


def _configs(table: pd.DataFrame, keys: list[str]) -> list[tuple]:
    """The configurations of `keys` in `table`, each a tuple of its values, in order."""
    return [g if isinstance(g, tuple) else (g,) for g, _ in table.groupby(keys, sort=True)] if keys else [()]


def _only(frame: pd.DataFrame, keys: list[str], config: tuple) -> pd.DataFrame:
    """The rows of `frame` of one configuration (its keys hold strings, as the width tables make them)."""
    for k, v in zip(keys, config):
        frame = frame[frame[k] == v]
    return frame


def _label(keys: list[str], config: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, config)) or "all runs"


def _steepest(configs: list[tuple], keys: list[str], table: pd.DataFrame, score: str, limit: int) -> list[tuple]:
    """At most `limit` configurations, those with the largest |score| (slope, drift) in `table`, in their order."""
    if len(configs) <= limit:
        return configs
    worst = table.assign(_s=table[score].abs()).groupby([table[k].astype(str) for k in keys]
                                                        )._s.max().sort_values(ascending=False)
    keep = {tuple(i) if isinstance(i, tuple) else (i,) for i in worst.index[:limit]}
    return [c for c in configs if tuple(map(str, c)) in keep]


def shown_steps(steps: list[int]) -> list[int]:
    if len(steps) <= MAX_STEPS:
        return steps
    picks = np.unique(np.linspace(0, len(steps) - 1, MAX_STEPS).round().astype(int))
    return [steps[i] for i in picks]


def coord_check(table: pd.DataFrame, keys: list[str], slope_table: pd.DataFrame, path: Path) -> Drawn:
    steps = sorted(table.step.unique())
    shown = shown_steps(steps)
    every = _configs(table, keys)
    configs = _steepest(every, keys, slope_table, "slope", MAX_ROWS)
    layers = sorted(table.layer.unique())
    readout = int(table[table.readout].layer.max()) if table.readout.any() else None
    colours = dict(zip(layers, [f"C{i % 10}" for i in range(len(layers))]))
    names = {l: f"layer {l}" + (" (input)" if l == 0 else " (readout)" if l == readout else "") for l in layers}
    note = tk.notes(f"steps {', '.join(map(str, shown))} of {len(steps)} recorded" if shown != steps else "",
                    f"the {len(configs)} of {len(every)} configurations whose layers follow width most (largest |slope|)"
                    if len(configs) < len(every) else "")
    fig, axes = tk.panels(len(configs), len(shown), 2.7, 2.3, tk.title_lines(note) + 1)
    widths = sorted(table.width.unique())
    for r, config in enumerate(configs):
        rows, fits = _only(table, keys, config), _only(slope_table, keys, config)
        label = _label(keys, config)
        for c, step in enumerate(shown):
            ax = axes[r, c]
            part = rows[rows.step == step]
            stats = part.groupby(["layer", "width"]).l1.agg(["mean", "min", "max"]).reset_index()
            texts = []
            for layer, line in stats.groupby("layer"):
                ax.plot(line.width, line["mean"].clip(lower=tk.FLOOR), color=colours[layer], marker="o", markersize=3, lw=1.3)
                if (line["max"] > line["min"]).any():
                    ax.fill_between(line.width, line["min"].clip(lower=tk.FLOOR), line["max"].clip(lower=tk.FLOOR),
                                    color=colours[layer], alpha=0.18, lw=0)
                fit = fits[(fits.step == step) & (fits.layer == layer)]
                if len(fit) and np.isfinite(fit.slope.iloc[0]):
                    texts.append((colours[layer], f"{fit.slope.iloc[0]:+.2f}" + (" !" if fit.width_unstable.iloc[0] else "")))
            ax.set_xscale("log", base=2)
            ax.set_xticks(widths, [str(w) for w in widths], fontsize=7, rotation=45 if len(widths) > 5 else 0)
            ax.minorticks_off()
            tk.log_scale(ax)
            ax.tick_params(axis="y", labelsize=7)
            for i, (colour, text) in enumerate(texts):  # each layer's slope, top left
                ax.text(0.03, 0.97 - 0.1 * i, text, transform=ax.transAxes, color=colour, fontsize=7, va="top",
                        bbox=dict(facecolor="white", alpha=0.75, lw=0, pad=0.5))
            if r == 0:
                ax.set_title(f"step {step}", fontsize=9)
            if r == len(configs) - 1:
                ax.set_xlabel("width", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{label}\nl1 = mean |pre-activation|", fontsize=8)
    handles = [tk.Line2D([], [], color=colours[l], marker="o", markersize=4) for l in layers]
    fig.legend(handles, [names[l] for l in layers], title="layer", loc="upper left",
               bbox_to_anchor=fig._initlab_legend_at, frameon=False)
    tk.title(fig, "Coord check: each layer's l1 against width (slope of log l1 on log width in each panel; "
                  "! = width_unstable)", note)
    return tk.save(fig, path, note)


def lr_transfer(table: pd.DataFrame, keys: list[str], best: pd.DataFrame, path: Path) -> Drawn:
    """Final training loss against the learning rate, a curve per width (darker = narrower), each width's best
    rate starred; a panel per configuration of the other swept keys. Diverged runs are left out of a curve
    (gaps), and the note says how many."""
    import matplotlib.pyplot as plt

    every = _configs(table, keys)
    configs = _steepest(every, keys, best, "drift_octaves", MAX_ROWS)
    panels = [(config, _only(table, keys, config), _only(best, keys, config)) for config in configs]
    widths = sorted(table.width.unique())
    cmap = plt.get_cmap("viridis")
    colours = {w: cmap(0.85 * i / max(1, len(widths) - 1)) for i, w in enumerate(widths)}
    diverged = int((~np.isfinite(table.train_loss)).sum())
    # Each panel's y axis stops at CUT x its worst best loss: the minima are the point; past it, the runs blowing up
    above = sum(int((part.train_loss[np.isfinite(part.train_loss)] > CUT * mine.train_loss.max()).sum())
                for _, part, mine in panels if len(mine))
    note = tk.notes(f"{diverged} of {len(table)} (width, rate) points diverged or failed in every seed: gaps in their curves"
                    if diverged else "",
                    f"{above} points with a loss past {CUT:g}x the panel's worst best loss are above the axis" if above else "",
                    f"the {len(configs)} of {len(every)} configurations whose best rate drifts most" if len(configs) < len(every) else "")
    cols = min(len(configs), 2)
    rows = -(-len(configs) // cols)
    fig, axes = tk.panels(rows, cols, 4.6, 3.2, tk.title_lines(note))
    for i, (config, part, mine) in enumerate(panels):
        ax = axes[i // cols, i % cols]
        for w in widths:
            line = part[part.width == w].sort_values("lr")
            y = line.train_loss.where(np.isfinite(line.train_loss))
            ax.plot(line.lr, y, color=colours[w], marker="o", markersize=2.5, lw=1.3)
            star = mine[mine.width == w]
            if len(star):
                ax.plot(star.best_lr, star.train_loss, marker="*", markersize=11, color=colours[w],
                        markeredgecolor="black", markeredgewidth=0.6, linestyle="none")
        ax.set_xscale("log", base=2)
        tk.log_scale(ax)
        if len(mine):
            low = part.train_loss[np.isfinite(part.train_loss)].min()
            ax.set_ylim(0.8 * low, CUT * mine.train_loss.max())
        drift = mine.drift_octaves.iloc[0] if len(mine) else float("nan")
        ax.set_title(f"{_label(keys, config)}\nbest rate drifts {drift:.0f} octave(s) across widths", fontsize=9)
        ax.set_xlabel("learning rate (lr.value)", fontsize=8)
        ax.set_ylabel("final training loss", fontsize=8)
        ax.tick_params(labelsize=7)
    tk.hide_unused(axes, len(configs), cols)
    handles = [tk.Line2D([], [], color=colours[w], marker="o", markersize=4) for w in widths]
    handles.append(tk.Line2D([], [], color="0.5", marker="*", markersize=10, markeredgecolor="black", linestyle="none"))
    fig.legend(handles, [str(w) for w in widths] + ["best rate"], title="width", loc="upper left",
               bbox_to_anchor=fig._initlab_legend_at, frameon=False)
    tk.title(fig, "Learning-rate transfer: final training loss against the rate, a curve per width", note)
    return tk.save(fig, path, note)
