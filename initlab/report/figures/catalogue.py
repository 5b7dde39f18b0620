"""Every figure of a report, in the report's order, drawn one after another or by forked processes."""

from __future__ import annotations

from pathlib import Path
from typing import Collection, Optional

from initlab.report import width
from initlab.report.figures import heatmaps, lines as plots, processes as figure_processes, theory_figures
from initlab.report.figures import width as width_figures
from initlab.report.figures.facets import Drawn
from initlab.report.tables import Sweep


def all_figures(sweep: Sweep, palette: dict, folder: Path, widths: width.WidthTables, workers: int = 1,
                only: Optional[Collection[str]] = None) -> dict[str, Drawn]:
    """Every figure of a report, by title; none when no run has records (all unfinished or corrupt).
    `widths`: the sweep's width analyses (width.analyse), which the report's page reads too.
    With workers > 1, drawn by that many forked processes at once (figure_processes: only where
    nothing else runs in this process). `only`: the names (the keys below) of the figures to draw."""
    if sweep.layers.empty and sweep.curves.empty:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    figures = {  # in the report's order: each draws {title: Drawn}
        "curves": lambda: {"Training curves": plots.training_curves(sweep, palette, folder / "curves.png")},
        "gradient flow": lambda: {"Gradient flow (weights)": plots.gradient_flow(
            sweep, palette, folder / "gradient_flow.png")},
        "backprop flow": lambda: {"Gradient flow (back-propagated dL/dz)": plots.gradient_flow(
            sweep, palette, folder / "backprop_flow.png", "backprop_grad_norm", "back-propagated gradient norm ‖dL/dz‖")},
        "gradient heatmap": lambda: {"Gradient-norm heatmap": heatmaps.gradient_heatmap(
            sweep, folder / "grad_heatmap.png")},
        "accuracy": lambda: {"Final accuracy": heatmaps.accuracy_heatmap(sweep, folder / "accuracy_heatmap.png")},
        "signature": lambda: {"Vanishing / exploding signature": heatmaps.signature_heatmap(
            sweep, folder / "signature_heatmap.png")},
        "diagnosis": lambda: {"Diagnosis over the grid": heatmaps.diagnosis_heatmap(
            sweep, folder / "diagnosis_heatmap.png")},
        "dead units": lambda: {"Dead units": plots.dead_units(sweep, palette, folder / "dead_units.png")},
        "theory": lambda: theory_figures.all_theory_figures(sweep, palette, folder),  # none to two
        "width": lambda: {} if widths.coord is None else {"Coord check (width)": width_figures.coord_check(
            widths.coord, widths.coord_keys, widths.slopes, folder / "coord_check.png")},
        "lr transfer": lambda: {} if widths.transfer is None else {"Learning-rate transfer (width)": width_figures.lr_transfer(
            widths.transfer, widths.transfer_keys, widths.best, folder / "lr_transfer.png")},
    }
    if only is not None:
        unknown = set(only) - set(figures)
        if unknown:
            raise ValueError(f"no figure named {sorted(unknown)}: the figures are {list(figures)}")
        figures = {name: draw for name, draw in figures.items() if name in only}
    # The slowest first (1.4 to 1.8 s each for 1,024 runs on the 2-core VM; the heatmaps of
    # accuracy, diagnosis and gradient norms and the dead units 0.6 to 0.9 s), so workers end together.
    slow_first = sorted(figures, key=lambda name: name not in SLOW_FIGURES)
    drawn = dict(zip(slow_first, figure_processes.draw([figures[name] for name in slow_first], workers)))
    return {title: figure for name in figures for title, figure in drawn[name].items()}


SLOW_FIGURES = ("gradient flow", "backprop flow", "theory", "curves", "signature")
