"""Figures that put theory beside measurement; each is drawn only when the sweep holds what it needs.

- preact_theory: per layer, the pre-activation std measured at init against the mean-field
  prediction from the run's own weights (predictions.for_model), one panel per configuration;
- edge_of_chaos: final accuracy over sigma_w^2 x depth (a variance_scaling sweep with mode fan_in,
  where init.scale is sigma_w^2), with the correlation depth scale xi_c and 6 xi_c drawn over it
  (Schoenholz et al. 2017, Fig. 5: nets train up to about 6 xi_c layers);
- jacobian_by_depth: the input-output Jacobian's singular values at init (mean, max, spread) per
  depth, init as the colour, a row per value of the other swept keys (Pennington et al. 2017).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullLocator

from initlab.report.figures import facets as fx
from initlab import theory
from initlab.report.figures.facets import Drawn
from initlab.report.figures.toolkit import (FLOOR, draw_bands, grid, hide_unused, legend, log_scale, notes, panel_keys, panels, save,
                           title, title_lines, with_init)
from initlab.report.tables import Sweep

DEPTH, SCALE = "model.depth", "init.scale"


def preact_theory(sweep: Sweep, palette: dict, path: Path) -> Optional[Drawn]:
    """Measured (solid) and predicted (dashed) pre-activation std per layer at the first recorded step."""
    layers = sweep.layers
    table = layers[layers.metric.isin(["preact_std", "predicted_preact_std"])][["run", "step", "layer", "metric", "value"]]
    if not (table.metric == "predicted_preact_std").any():
        return None
    table = table[table.step == table.groupby("run", observed=True).step.transform("min")]
    keys = panel_keys(sweep)
    chosen = fx.choose(sweep.runs, keys, what=f"panels ({', '.join(map(fx.short, keys))})")
    data = with_init(table.assign(value=table.value.clip(lower=FLOOR), metric=table.metric.astype(str)), sweep, chosen)
    summed = fx.band(data, ["facet", "metric", "init", "layer"])
    note = notes(chosen.note, fx.not_finite(data, "a value"), _outside_note(sweep))
    fig, axes, cols = grid(len(chosen.shown), title_lines=title_lines(note))
    for i, facet in enumerate(chosen.shown):
        ax = axes[i // cols, i % cols]
        part = summed[summed.facet == facet]
        draw_bands(ax, part[part.metric == "preact_std"], "layer", palette, marker=True)
        for init, line in part[part.metric == "predicted_preact_std"].groupby("init"):
            line = line.sort_values("layer")
            ax.plot(line.layer, line.center, color=palette.get(init, "0.3"), linestyle=(0, (4, 2)), lw=1.4,
                    marker="x", markersize=5)
        if len(part) and part.center.max() > 20 * part.center.min():  # log only where it spans decades
            ax.set_yscale("log")
        ax.set(xlabel="layer (0 = first, last = output)", ylabel="pre-activation std at init" if i % cols == 0 else None,
               title=facet)
        ax.xaxis.get_major_locator().set_params(integer=True)
    hide_unused(axes, len(chosen.shown), cols)
    inits = sorted(set(data.init))
    legend(fig, palette, inits)
    fig.legend([Line2D([], [], color="0.2", marker="o", markersize=4), Line2D([], [], color="0.2", marker="x",
                                                                              linestyle=(0, (4, 2)))],
               ["measured", "mean-field prediction"], loc="lower left",
               bbox_to_anchor=(fig._initlab_legend_at[0], 0.1), frameon=False)
    title(fig, f"Pre-activation std per layer at init: measured vs the mean-field length map "
               f"({fx.band_words(data, ['facet', 'metric', 'init', 'layer'])}; log scale where a panel spans decades; "
               f"below {FLOOR:g} drawn at {FLOOR:g})",
          note)
    return save(fig, path, note)


def _outside_note(sweep: Sweep) -> str:
    """Which runs have no prediction because mean-field theory does not describe their weights, and why
    (each init's reason in short; summary.json's theory.why_not has the numbers)."""
    runs = sweep.runs
    if "theory_applies" not in runs:
        return ""
    outside = runs[runs.theory_applies.eq(False)]
    if not len(outside):
        return ""
    by = outside.groupby(outside["init"].astype(str) if "init" in outside else pd.Series("runs", outside.index))
    reasons = "; ".join(f"{init}: {group.theory_why_not.iloc[0].rsplit(': ', 1)[-1]}" for init, group in by)
    return f"no prediction for {len(outside)} run(s) outside the theory ({reasons})"


def _edge_sweep(sweep: Sweep) -> Optional[tuple[float, float, str]]:
    """(sigma_b^2, mu_b, activation) when the sweep is a sigma_w^2 x depth grid the theory can draw over."""
    runs = sweep.runs
    needed = {DEPTH, SCALE} <= set(sweep.keys)
    if not needed or runs.get("init.mode") is None or runs.get("sigma_b2") is None or runs.get("bias_mean") is None:
        return None
    if set(runs["init.mode"].dropna()) != {"fan_in"} or runs["sigma_b2"].isna().any():
        return None
    if runs["sigma_b2"].nunique() != 1 or runs["bias_mean"].nunique() != 1 or runs["model.activation"].nunique() != 1:
        return None
    return float(runs["sigma_b2"].iloc[0]), float(runs["bias_mean"].iloc[0]), str(runs["model.activation"].iloc[0])


def edge_of_chaos(sweep: Sweep, path: Path) -> Optional[Drawn]:
    """Final test accuracy over sigma_w^2 x depth with xi_c and 6 xi_c (Schoenholz et al. 2017, Fig. 5)."""
    found = _edge_sweep(sweep)
    if found is None:
        return None
    sigma_b2, mu_b, activation = found
    runs = sweep.runs.assign(acc=100 * pd.to_numeric(sweep.runs.test_accuracy, errors="coerce"))
    cells = runs.pivot_table(index=DEPTH, columns=SCALE, values="acc", aggfunc="mean", dropna=False)
    counts = runs.pivot_table(index=DEPTH, columns=SCALE, values="run", aggfunc="count", dropna=False)
    xs, ys = cells.columns.to_numpy(float), cells.index.to_numpy(float)
    fig, ax = plt.subplots(figsize=(8.5, 6.2), constrained_layout=True)
    image = ax.pcolormesh(xs, ys, cells.to_numpy(), cmap="rocket", vmin=0, vmax=100, shading="nearest")
    fig.colorbar(image, ax=ax, label="final test accuracy (%), mean over seeds")
    for (depth, scale), acc in cells.stack(future_stack=True).items():
        text = "—" if not np.isfinite(acc) else f"{acc:.0f}"
        ax.text(scale, depth, text, ha="center", va="center", fontsize=7, color="white" if not acc > 60 else "black")
    fine = np.linspace(xs.min(), xs.max(), 241)
    xi = np.array([theory.correlation_depth_scale(s, sigma_b2, activation, mu=mu_b) or np.inf for s in fine])
    for factor, style, name in ((1, (0, (4, 2)), "ξ_c"), (6, "-", "6 ξ_c")):
        ax.plot(fine, np.minimum(factor * xi, 10 * ys.max()), color="#33ccff", linestyle=style, lw=2, label=name)
    critical = theory.critical_sigma_w2(sigma_b2, activation, mu=mu_b)
    if xs.min() <= critical <= xs.max():
        ax.axvline(critical, color="#33ccff", linestyle=":", lw=1.5, label=f"edge of chaos σ_w² = {critical:.3g}")
    step_x = np.diff(xs).min() / 2 if len(xs) > 1 else 0.5
    step_y = np.diff(ys).min() / 2 if len(ys) > 1 else 0.5
    ax.set(xlim=(xs.min() - step_x, xs.max() + step_x), ylim=(ys.min() - step_y, ys.max() + step_y),
           xlabel="σ_w² (init.scale, variance_scaling fan_in)", ylabel="depth (hidden layers)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)  # below: no cell hidden
    pooled = [fx.short(k) for k in sweep.keys if k not in (DEPTH, SCALE)]
    per_cell = int(counts.max().max()) if counts.size else 0
    note = f"{per_cell} run(s) per cell" + (f", pooled over {', '.join(pooled)}" if pooled else "")
    ax.set_title(f"Trainability of {activation} nets, σ_b² = {sigma_b2:.3g}{f', bias mean {mu_b:.3g}' if mu_b else ''}: accuracy with ξ_c and 6 ξ_c from "
                 f"mean-field theory\n({note}; '—': no finished run)", fontsize=10)
    return save(fig, path, "")


def jacobian_by_depth(sweep: Sweep, palette: dict, path: Path) -> Optional[Drawn]:
    """Mean, max and spread (std / mean) of the Jacobian's singular values at init against depth."""
    columns = {"jac_sv_mean": "mean singular value", "jac_sv_max": "largest singular value",
               "jac_sv_spread": "spread: std / mean"}
    runs = sweep.runs
    if DEPTH not in sweep.keys or not set(columns) <= set(runs) or runs[list(columns)].isna().all().all():
        return None
    keys = [k for k in panel_keys(sweep) if k != DEPTH]
    chosen = fx.choose(runs, keys, what=f"rows ({', '.join(map(fx.short, keys))})")
    long = runs.melt(id_vars=["run", DEPTH], value_vars=list(columns), var_name="stat", value_name="value")
    long = with_init(long.assign(value=pd.to_numeric(long.value, errors="coerce")), sweep, chosen)
    long[DEPTH] = pd.to_numeric(long[DEPTH])
    summed = fx.band(long, ["facet", "stat", "init", DEPTH])
    note = notes(chosen.note, fx.not_finite(long, "a value", "stat", dict(zip(columns, ("in the mean", "in the max",
                                                                                         "in the spread")))))
    fig, axes = panels(len(chosen.shown), len(columns), 3.6, 2.6, title_lines=title_lines(note))
    for i, facet in enumerate(chosen.shown):
        for j, (stat, label) in enumerate(columns.items()):
            ax = axes[i, j]
            part = summed[(summed.facet == facet) & (summed.stat == stat)]
            draw_bands(ax, part, DEPTH, palette, marker=True)
            ax.set_xscale("log", base=2)
            depths = sorted(part[DEPTH].unique())
            ax.set_xticks(depths, [f"{d:g}" for d in depths])
            ax.xaxis.set_minor_locator(NullLocator())
            if len(part) and (part.center > 0).all():
                # matplotlib's log labels: ticks between powers of ten labelled only where a panel spans
                # less than a decade or two (labelling 2 and 5 of every decade crowded a 6-decade axis)
                log_scale(ax)
            else:
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set(xlabel="depth (hidden layers)", title=f"{facet}: {label}" if keys else label)
    legend(fig, palette, sorted(set(long.init)))
    title(fig, f"Input-to-last-hidden Jacobian at init: its singular values per depth "
               f"({fx.band_words(long, ['facet', 'stat', 'init', DEPTH])})", note)
    return save(fig, path, note)


def all_theory_figures(sweep: Sweep, palette: dict, folder: Path) -> dict[str, Drawn]:
    drawn = {
        "Theory: predicted vs measured pre-activation std at init": preact_theory(sweep, palette, folder / "theory_preact.png"),
        "Theory: edge of chaos (trainability over sigma_w^2 x depth)": edge_of_chaos(sweep, folder / "edge_of_chaos.png"),
        "Dynamical isometry: Jacobian singular values per depth": jacobian_by_depth(sweep, palette, folder / "jacobian_depth.png"),
    }
    return {name: d for name, d in drawn.items() if d is not None}
