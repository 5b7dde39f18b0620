"""The coord check's figure (microsoft/mup's `plot_coord_data`): per configuration a row, per step a
panel, l1 against width on log-log axes, a line per layer (the mean over seeds, the seeds' range as
a band), each layer's fitted slope written in its panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from initlab.report.figures import toolkit as tk
from initlab.report.figures.facets import Drawn

MAX_STEPS = 6  # panels per row; more recorded steps: the first, the last and evenly spaced ones between


def shown_steps(steps: list[int]) -> list[int]:
    if len(steps) <= MAX_STEPS:
        return steps
    picks = np.unique(np.linspace(0, len(steps) - 1, MAX_STEPS).round().astype(int))
    return [steps[i] for i in picks]


def coord_check(table: pd.DataFrame, keys: list[str], slope_table: pd.DataFrame, path: Path) -> Drawn:
    steps = sorted(table.step.unique())
    shown = shown_steps(steps)
    configs = [tuple(g) if isinstance(g, tuple) else (g,) for g, _ in table.groupby(keys, sort=True)] if keys else [()]
    layers = sorted(table.layer.unique())
    readout = int(table[table.readout].layer.max()) if table.readout.any() else None
    colours = dict(zip(layers, [f"C{i % 10}" for i in range(len(layers))]))
    names = {l: f"layer {l}" + (" (input)" if l == 0 else " (readout)" if l == readout else "") for l in layers}
    note = tk.notes(f"steps {', '.join(map(str, shown))} of {len(steps)} recorded" if shown != steps else "")
    fig, axes = tk.panels(len(configs), len(shown), 2.7, 2.3, tk.title_lines(note) + 1)
    widths = sorted(table.width.unique())
    for r, config in enumerate(configs):
        rows = table
        for k, v in zip(keys, config):
            rows = rows[rows[k] == v]
        label = ", ".join(f"{k}={v}" for k, v in zip(keys, config)) or "all runs"
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
                fit = slope_table[(slope_table.step == step) & (slope_table.layer == layer)]
                for k, v in zip(keys, config):
                    fit = fit[fit[k].astype(str) == str(v)]
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
