"""A run's verdict: every rule on its tables (Evidence, built once); the label is the kind of the first
finding in RULES order (the most fundamental failure first), or `healthy` when none fires.
Thresholds come from ``conf/diagnose/default.yaml`` and can be overridden like any config value.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable, Optional

import pandas as pd

from initlab.diagnosis.evidence import Context, Evidence, Finding, strict
from initlab.diagnosis.gradients import exploding, vanishing
from initlab.diagnosis.rules import (dead_layer, dead_units, diverged, failed, init_too_large, init_too_small,
                                      not_learning, saturation, symmetric, updates_too_small)
from initlab.diagnosis.stuck import stuck


# The label is the mechanism a user must fix: the first of these that fires (docs/diagnosis.md, "Which
# label wins"). A run that crashed or blew up first; then the inits no learning can get out of (a symmetric
# one; a net with no weight gradient at all; a layer born dead), before the scale problems that a dead or
# symmetric net also shows as side effects (a "vanishing" signal that is exactly 0 is a dead layer); an init
# too large before vanishing (huge first gradients wreck the first layers, whose gradients then vanish:
# the chaotic phase); vanishing before an init too small (a deep net's small init shows as a shrinking
# signal); then steps too small, and what training did (dead units, saturation).
# `not_learning` is the catch-all: a run that did not learn is never `healthy`, even when no
# mechanism rule can say why.
RULES: tuple[Callable[[Evidence, dict], Optional[Finding]], ...] = (
    failed, diverged, exploding, symmetric, stuck, dead_layer, init_too_large, vanishing, init_too_small,
    updates_too_small, dead_units, saturation, not_learning,
)


def diagnose(layers: pd.DataFrame, curves: pd.DataFrame, context: Context, thresholds: dict) -> dict:
    """The verdict for one run: {'label': ..., 'findings': [...]} (plain data, for summary.json)."""
    ev = Evidence(layers, curves, context)
    # With no statistics recorded, only the run's status and its losses can speak.
    rules = RULES if len(layers) else (failed, diverged, symmetric, not_learning)
    findings = [f for f in (rule(ev, thresholds) for rule in rules) if f is not None]
    # dead_layer and dead_units both say `dead_units`: the first (the born-dead layer) speaks for both
    findings = [f for i, f in enumerate(findings) if f.kind != "dead_units" or all(g.kind != f.kind for g in findings[:i])]
    label = findings[0].kind if findings else "healthy"
    return {"label": label, "findings": [strict(asdict(f)) for f in findings]}


def describe(diagnosis: dict) -> list[str]:
    """Lines to print at the end of a run."""
    lines = [f"diagnosis: {diagnosis['label']}"]
    lines += [f"  - {f['kind']}: {f['message']}" for f in diagnosis["findings"]]
    return lines
