"""The drawing toolkit every report figure shares: panel grids, log scales, bands, legends, titles
that say what a figure leaves out, and saving. It draws no figure of its own."""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO notes would land in Hydra's job log

import matplotlib.pyplot as plt  # noqa: E402
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
    """One line (center) and band (low-high) per init of a `facets.band` table.

    An init with a single point (one evaluation: a sweep of one epoch) is a dot with its low-high range as
    an error bar (a band of one x has no width); dots of several inits at the same x are spread a little
    along x, in the inits' order, so that one with the same value does not hide another."""
    styles = fx.dashes(list(palette))
    groups = [(init, part.sort_values(x)) for init, part in data.groupby("init", sort=True)]
    singles = [(init, part[x].iloc[0]) for init, part in groups if len(part) == 1]
    step = 0.015 * max(abs(float(data[x].max())), 1.0) if len(data) else 0.0
    for init, part in groups:
        colour = palette.get(init, "0.3")
        if len(part) == 1:
            at = part[x].iloc[0]
            beside = [i for i, v in singles if v == at]
            xs = [at + step * (beside.index(init) - (len(beside) - 1) / 2)]
            low, high = part.low.iloc[0], part.high.iloc[0]
            ax.errorbar(xs, part.center, yerr=[[part.center.iloc[0] - low], [high - part.center.iloc[0]]] if high > low
                        else None, color=colour, marker="o", markersize=3.5, capsize=2, lw=1.2, linestyle="none")
            continue
        ax.plot(part[x], part.center, color=colour, linestyle=styles.get(init, "-"), lw=1.4,
                marker="o" if marker else None, markersize=3.5)
        if (part.high > part.low).any():
            ax.fill_between(part[x], part.low, part.high, color=colour, alpha=0.18, lw=0)
            # (on a log axis matplotlib leaves out a band's non-positive part; the line stays)
