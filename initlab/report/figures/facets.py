"""Which panels a figure draws, and how a line sums up many runs: the choices every figure shares.

A figure shows every configuration, or says on itself and in report.md which ones it shows and
why: past MAX_FACETS panels it draws the worst and the best half by final test loss (median over
the panel's runs; a run without a loss, diverged or failed, counts as the worst), never the first N.
A line is the median of the runs it sums up (one exploding seed does not drag it); its band is
their 25-75 % range when there are more than HANDFUL runs, else their whole range (min to max).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MAX_FACETS = 12
HANDFUL = 5
SHORT = {"model.depth": "depth", "model.width": "width", "model.activation": "activation",
         "lr.value": "lr", "trainer.seed": "seed", "optim.momentum": "momentum"}


def short(key: str) -> str:
    return SHORT.get(key, key)


@dataclass
class Drawn:
    """A saved figure and what it leaves out ('' when it shows every configuration)."""

    path: Path
    note: str = ""


@dataclass
class Facets:
    """The panels of a figure: each run's panel label, the panels drawn (in order), and a note."""

    keys: list[str]
    label_of: dict  # run name -> its panel's label
    shown: list[str]
    total: int
    note: str

    def runs_in(self, table: pd.DataFrame, label: str) -> pd.DataFrame:
        return table[table.run.map(self.label_of) == label]


def labels(runs: pd.DataFrame, keys: list[str]) -> pd.Series:
    """A readable panel label per run ('depth=10, lr=0.1'), or one shared label."""
    if not keys:
        return pd.Series("all runs", index=runs.index)
    parts = [runs[k].astype(str).radd(f"{short(k)}=") for k in keys]
    return parts[0].str.cat(parts[1:], sep=", ") if len(parts) > 1 else parts[0]


def _key_order(runs: pd.DataFrame, keys: list[str], label: pd.Series) -> list[str]:
    # Panels in the order of their (numeric where possible) key values, not alphabetically.
    frame = runs[keys].copy() if keys else pd.DataFrame(index=runs.index)
    frame["_label"] = label
    frame = frame.drop_duplicates("_label")
    for key in keys:
        numeric = pd.to_numeric(frame[key], errors="coerce")
        frame[key] = numeric if numeric.notna().all() else frame[key].astype(str)
    return list(frame.sort_values(keys)["_label"] if keys else frame["_label"])


def choose(runs: pd.DataFrame, keys: list[str], limit: int = MAX_FACETS, what: str = "configurations") -> Facets:
    """The panels for one panel per value of `keys`: all of them, or past `limit` the worst and
    the best half by final test loss (median over the panel's runs), worst first."""
    label = labels(runs, keys)
    order = _key_order(runs, keys, label)
    if len(order) <= limit:
        return Facets(keys, dict(zip(runs.run, label)), order, len(order), "")
    loss = pd.to_numeric(runs.test_loss, errors="coerce").where(lambda s: np.isfinite(s), np.inf)
    median = loss.groupby(label).median().reindex(order)
    ranked = median.sort_values(ascending=False, kind="stable")  # worst (highest loss, no loss) first
    half = limit // 2
    shown = list(ranked.index[:half]) + list(ranked.index[-(limit - half):])
    note = (f"{limit} of {len(order)} {what}: the {half} worst and the {limit - half} best by final test loss "
            f"(median over their runs; diverged or failed counts as worst), worst first")
    return Facets(keys, dict(zip(runs.run, label)), shown, len(order), note)


def band(table: pd.DataFrame, by: list[str], value: str = "value") -> pd.DataFrame:
    """Per group of `by`: center (median), low and high of `value`, and n (values). The band is the
    25-75 % range where the largest group holds more than HANDFUL values, else min to max;
    non-finite values are left out."""
    finite = table[np.isfinite(table[value])]
    grouped = finite.groupby(by, observed=True)[value]
    n = grouped.size()
    quartiles = len(n) > 0 and n.max() > HANDFUL
    low, high = (grouped.quantile(0.25), grouped.quantile(0.75)) if quartiles else (grouped.min(), grouped.max())
    out = pd.DataFrame({"center": grouped.median(), "low": low, "high": high})
    return out.assign(n=n).reset_index()


def not_finite(table: pd.DataFrame, what: str, by: str | None = None, places: dict | None = None) -> str:
    """What a figure leaves out because it is not finite ('' when nothing): band() drops those values
    and matplotlib draws no line to them, so a diverged run's overflowed norms or NaN losses would
    vanish from a panel without a word. Counted in runs, per value of `by` named by `places`
    (in its order): 'gaps where a value is not finite (overflow or NaN): 1 run at the end'."""
    bad = table[~np.isfinite(table["value"].to_numpy(dtype=float))]
    if bad.empty:
        return ""
    if by is None:
        counts = [(bad.run.nunique(), "")]
    else:
        n = bad.groupby(by, observed=True).run.nunique()
        counts = [(int(n[k]), f" {word}") for k, word in (places or {}).items() if k in n.index]
    runs = ", ".join(f"{c} run{'s' if c > 1 else ''}{where}" for c, where in counts)
    return f"gaps where {what} is not finite (overflow or NaN): {runs}"


def band_words(table: pd.DataFrame, by: list[str]) -> str:
    """How `band` sums up these groups, for a figure's title."""
    sizes = table[by].value_counts() if len(table) else pd.Series([0])
    if sizes.max() > HANDFUL:
        return "median over runs, band 25-75 %"
    return "one run per line" if sizes.max() <= 1 else "median over runs, band min to max"


# After tab10: colours far from all of tab10's and from each other (from Sasha Trubetskoy's list of
# 20 distinct colours): black, maroon, navy, teal, magenta, lime, lavender, yellow.
EXTRA_COLOURS = ("#000000", "#800000", "#000075", "#469990", "#f032e6", "#bfef45", "#dcbeff", "#ffe119")


def palette(names: list[str]) -> dict[str, tuple]:
    """One clearly distinct colour per name: tab10, then EXTRA_COLOURS (not tab20, whose pairs are a
    dark and a light shade of one hue), then evenly spaced hues."""
    import seaborn as sns
    from matplotlib.colors import to_rgb

    colours = list(sns.color_palette("tab10")) + [to_rgb(c) for c in EXTRA_COLOURS]
    if len(names) > len(colours):
        colours += sns.color_palette("husl", len(names) - len(colours))
    return dict(zip(names, colours))


def dashes(names: list[str]) -> dict[str, tuple]:
    """A line style per name: solid for the first ten colours, dashed after (a second cue)."""
    return {name: (0, ()) if i < 10 else (0, (5, 2)) for i, name in enumerate(names)}
