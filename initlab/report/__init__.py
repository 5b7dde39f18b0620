"""report: sweep folders -> tables -> figures -> one page (`initlab-report`). Imports no torch.

    from initlab.report import load
    sweep = load("multirun/2026-11-28/07-06-42")   # sweep.runs, sweep.layers, sweep.curves
"""

from initlab.report.tables import load

__all__ = ["load"]
