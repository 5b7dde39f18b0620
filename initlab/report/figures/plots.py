"""Line and bar figures of a Sweep: training curves, gradient flow, dead units; and all_figures.

Each function reads only the sweep's tidy tables, sums runs up with pandas (facets.band) and
draws with plain matplotlib, so a 1,024-run sweep draws in seconds. Every figure colours init
schemes the same way, compares inits within a panel and gives one panel per value of the other
swept keys: all of them, or (facets.choose) the worst and best, saying so on the figure.
"""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO notes would land in Hydra's job log

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from initlab.report.figures import facets as fx  # noqa: E402
from initlab.report.figures.facets import Drawn  # noqa: E402
from initlab.report.tables import Sweep  # noqa: E402

FLOOR = 1e-12  # a norm of exactly 0 (a dead network) is drawn here on log axes
WRAP = 6


def panel_keys(sweep: Sweep) -> list[str]:
    """The swept keys a line figure gives a panel each (init is the colour within a panel)."""
    return [k for k in sweep.keys if k != "init"]


def with_init(table: pd.DataFrame, sweep: Sweep, chosen: fx.Facets) -> pd.DataFrame:
    """`table` (rows with a run) with each row's panel label and init, only the panels drawn."""
    table = table.assign(facet=table.run.map(chosen.label_of).astype(object))
    table = table[table.facet.isin(chosen.shown)]
    init = sweep.runs.set_index("run")["init"].astype(str) if "init" in sweep.runs else None
    return table.assign(init=table.run.map(init).astype(object) if init is not None else "all")


# Line figures are laid out by hand: matplotlib's constrained layout measures every tick label of
# every panel (over a second for a 12 x 3 grid of log axes); these margins fit our labels.
LEFT, RIGHT_LEGEND, BOTTOM, GAP_W, GAP_H = 0.8, 2.6, 0.55, 0.85, 0.95  # inches


class _PlainLogLabels(ticker.LogFormatterSciNotation):
    """matplotlib's log-axis labels, but a tick between powers of ten reads "3.4", not "3.4 x 10^0":
    on an axis spanning less than a decade matplotlib labels those ticks, and that wide form pushed
    the axis title past the figure's left edge (LEFT)."""

    def __call__(self, x, pos=None):
        label = super().__call__(x, pos)
        return f"{x:g}" if label and not math.isclose(math.log10(x), round(math.log10(x))) else label


def log_scale(ax) -> None:
    """A log y axis, labelled so that its tick labels fit the hand-set margins."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogLabels())
    ax.yaxis.set_minor_formatter(_PlainLogLabels(labelOnlyBase=False))


def panels(rows: int, cols: int, width: float, height: float, title_lines: int = 1):
    """A figure of rows x cols panels of width x height inches, room for a legend on the right
    and a title of `title_lines` lines on top."""
    top = 0.5 + 0.25 * title_lines  # the figure's title, then each top panel's own
    fig_w = LEFT + cols * width + (cols - 1) * GAP_W + RIGHT_LEGEND
    fig_h = top + rows * height + (rows - 1) * GAP_H + BOTTOM
    fig, axes = plt.subplots(rows, cols, figsize=(fig_w, fig_h), squeeze=False)
    fig.subplots_adjust(left=LEFT / fig_w, right=1 - RIGHT_LEGEND / fig_w, bottom=BOTTOM / fig_h, top=1 - top / fig_h,
                        wspace=GAP_W / width, hspace=GAP_H / height)
    fig._initlab_legend_at = (1 - (RIGHT_LEGEND - 0.15) / fig_w, 1 - top / fig_h)
    fig._initlab_title_y = 1 - 0.1 / fig_h
    return fig, axes


def grid(n_panels: int, rows_per_facet: int = 1, width: float = 3.6, height: float = 2.6, title_lines: int = 1):
    cols = max(1, min(n_panels, WRAP))
    wraps = max(1, math.ceil(n_panels / cols))
    if cols == 1:  # one panel (a single configuration): a larger one
        width, height = max(width, 6.5), max(height, 3.8)
    fig, axes = panels(wraps * rows_per_facet, cols, width, height, title_lines)
    return fig, axes, cols


def hide_unused(axes, n: int, cols: int, rows_per_facet: int = 1) -> None:
    for i in range(n, axes.shape[1] * (axes.shape[0] // rows_per_facet)):
        for row in range(rows_per_facet):
            axes[rows_per_facet * (i // cols) + row, i % cols].set_visible(False)


def legend(fig, palette: dict, names, title: str = "init") -> None:
    styles = fx.dashes(list(palette))
    handles = [Line2D([], [], color=palette[n], linestyle=styles[n], marker="o", markersize=4) for n in names]
    if handles:
        fig.legend(handles, list(names), title=title, loc="upper left", bbox_to_anchor=fig._initlab_legend_at,
                   frameon=False)


def title(fig, text: str, note: str = "") -> None:
    """The figure's title, and on a second line what it leaves out."""
    text += f"\n{note}" if note else ""
    # A title wider than its figure is clipped at both edges; a character is ~0.55 em wide.
    size = FontProperties(size=plt.rcParams["figure.titlesize"]).get_size_in_points()
    width_pt = fig.get_figwidth() * 72
    if hasattr(fig, "_initlab_title_y"):  # laid out by hand (panels) with room for its lines: a smaller font
        longest = max(len(line) for line in text.split("\n"))
        fig.suptitle(text, y=fig._initlab_title_y, va="top", fontsize=max(7.0, min(size, width_pt / (0.55 * longest))))
    else:  # constrained layout makes room for a title it places itself: lines wrapped to fit
        chars = max(20, int(width_pt / (0.55 * size)))
        fig.suptitle("\n".join(textwrap.fill(line, chars) for line in text.split("\n")))


def save(fig, path: Path, note: str = "") -> Drawn:
    """Write the figure; `note` (lines of what it leaves out) goes to the report as one sentence."""
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Drawn(path, "; ".join(note.split("\n")))


def notes(*parts: str) -> str:
    """What a figure leaves out, one line each (title() puts them under the title)."""
    return "\n".join(part for part in parts if part)


def title_lines(note: str) -> int:
    """The lines of a figure's title with `note` below it."""
    return 1 + (note.count("\n") + 1 if note else 0)


def say_in_panel(ax, text: str) -> None:
    """Why a panel has nothing drawn in it, in grey at its centre."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def draw_bands(ax, data: pd.DataFrame, x: str, palette: dict, marker: bool = False) -> None:
    """One line (center) and band (low-high) per init of a `facets.band` table."""
    styles = fx.dashes(list(palette))
    for init, part in data.groupby("init", sort=True):
        part = part.sort_values(x)
        colour = palette.get(init, "0.3")
        # a line of one point draws nothing: a run that diverged within its first bin of steps is a dot
        ax.plot(part[x], part.center, color=colour, linestyle=styles.get(init, "-"), lw=1.4,
                marker="o" if marker or len(part) == 1 else None, markersize=3.5)
        if (part.high > part.low).any():
            ax.fill_between(part[x], part.low, part.high, color=colour, alpha=0.18, lw=0)
            # (on a log axis matplotlib leaves out a band's non-positive part; the line stays)


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


def all_figures(sweep: Sweep, palette: dict, folder: Path, workers: int = 1) -> dict[str, Drawn]:
    """Every figure of a report, by name; none when no run has records (all unfinished or corrupt).
    With workers > 1, drawn by that many forked processes at once (figure_processes: only where
    nothing else runs in this process)."""
    from initlab.report.figures import processes as figure_processes
    from initlab.report.figures import heatmaps
    from initlab.report.figures import theory_figures
    if sweep.layers.empty and sweep.curves.empty:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    figures = {  # in the report's order: each draws {title: Drawn}
        "curves": lambda: {"Training curves": training_curves(sweep, palette, folder / "curves.png")},
        "gradient flow": lambda: {"Gradient flow (weights)": gradient_flow(
            sweep, palette, folder / "gradient_flow.png")},
        "backprop flow": lambda: {"Gradient flow (back-propagated dL/dz)": gradient_flow(
            sweep, palette, folder / "backprop_flow.png", "backprop_grad_norm", "back-propagated gradient norm ‖dL/dz‖")},
        "gradient heatmap": lambda: {"Gradient-norm heatmap": heatmaps.gradient_heatmap(
            sweep, folder / "grad_heatmap.png")},
        "accuracy": lambda: {"Final accuracy": heatmaps.accuracy_heatmap(sweep, folder / "accuracy_heatmap.png")},
        "signature": lambda: {"Vanishing / exploding signature": heatmaps.signature_heatmap(
            sweep, folder / "signature_heatmap.png")},
        "diagnosis": lambda: {"Diagnosis over the grid": heatmaps.diagnosis_heatmap(
            sweep, folder / "diagnosis_heatmap.png")},
        "dead units": lambda: {"Dead units": dead_units(sweep, palette, folder / "dead_units.png")},
        "theory": lambda: theory_figures.all_theory_figures(sweep, palette, folder),  # none to two
    }
    # The slowest first (1.4 to 1.8 s each for 1,024 runs on the 2-core VM; the heatmaps of
    # accuracy, diagnosis and gradient norms and the dead units 0.6 to 0.9 s), so workers end together.
    slow_first = sorted(figures, key=lambda name: name not in SLOW_FIGURES)
    drawn = dict(zip(slow_first, figure_processes.draw([figures[name] for name in slow_first], workers)))
    return {title: figure for name in figures for title, figure in drawn[name].items()}


SLOW_FIGURES = ("gradient flow", "backprop flow", "theory", "curves", "signature")
