"""Sweep folders -> tidy pandas tables: one row per run, and the per-step tables of all runs.

    from initlab.report.tables import load
    sweep = load(["outputs/studies/depth_study"])
    sweep.runs          # one row per run: config columns, final metrics, status, diagnosis, outlier
    sweep.layers        # per-layer statistics of every run, with the swept config columns joined
    sweep.curves        # training curves of every run, likewise
    sweep.summary()     # mean ± std over seeds per swept configuration, and diagnosis counts

A run is any folder holding a summary.json (a finished run: completed, diverged or failed) or a
Hydra `.hydra/config.yaml` without one (a run that never finished: `unfinished`). A finished run
whose files cannot be read is `corrupt`, its `error` naming the file and the problem; every other
run is still reported. Nothing here writes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
from omegaconf import OmegaConf

from initlab.store import records
from initlab.store.flat import flatten
from initlab.store.keys import COMPARED, GROUPS, WHERE_NOT_WHAT

SEED = "trainer.seed"
READERS = 8  # threads reading run folders
# A run is an `outlier` when its final test accuracy is more than OUTLIER_GAP below the median of
# the runs that differ from it only in seed, and more than OUTLIER_SPREAD times their std.
OUTLIER_GAP, OUTLIER_SPREAD = 0.05, 3.0
# A configuration `trails` when its final test accuracy (mean over seeds) is more than TRAIL_GAP below the
# best configuration's among those that differ from it only in the COMPARED groups' keys (store/keys.py; the same
# architecture, data, optimizer and training length). On the diagnosis catalogue the healthy inits of the
# founding net (SGD, an epoch) lie within 5.5 points of each other (84.2-89.7 %); N(0, 0.01^2) at depth 2 trails
# Kaiming by 67 points after an epoch and by 32 after depth_study's three.
TRAIL_GAP = 0.15
STATUSES = (*records.STATUSES, "unfinished", "corrupt")  # every status a runs table can hold
METRICS = ("test_accuracy", "test_loss", "train_loss")


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run folder at or below `paths` (a run, a sweep, or a folder of sweeps), sorted, once each.

    A run folder holds a summary.json or a .hydra/ folder; folders named `report` (and what is
    below them) are not searched. One walk of each tree, each root resolved once (a realpath per
    run made this a tenth of the end of a 1,000-job sweep).
    """
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        root = path.resolve()
        for folder, dirs, files in os.walk(root):
            if records.SUMMARY in files or ".hydra" in dirs:
                found.add(Path(folder))
            dirs[:] = [d for d in dirs if d not in (".hydra", "report")]
    return sorted(found, key=_natural)


def _natural(path: Path) -> tuple:
    # Job folders are numbered: 2 before 10.
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts)


def _from_hydra(folder: Path) -> dict:
    """A run's config and group choices from Hydra's .hydra/ files (empty for a run outside Hydra)."""
    if not (folder / ".hydra" / "config.yaml").exists():
        return {}
    cfg = OmegaConf.load(folder / ".hydra" / "config.yaml")
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation that cannot be resolved here (e.g. a missing env var)
        config = OmegaConf.to_container(cfg, resolve=False)
    choices = {}
    hydra_file = folder / ".hydra" / "hydra.yaml"
    if hydra_file.exists():
        runtime = OmegaConf.load(hydra_file).hydra.runtime
        choices = {k: v for k, v in OmegaConf.to_container(runtime.choices).items() if not k.startswith("hydra")}
    return {"config": config, "choices": choices}


def _problem(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{Path(e.filename).name}: {e.strerror or type(e).__name__}"
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first}"


def _without_records(folder: Path, status: str, reason: str | None) -> dict:
    """The summary of a run whose records are absent (unfinished) or unreadable (corrupt): what its
    .hydra/ files still tell, and why it has no numbers."""
    try:
        known = _from_hydra(folder)
    except Exception as e:  # half-written by a job starting right now, or damaged
        known, reason = {}, reason or f".hydra/config.yaml: unreadable ({_problem(e)})"
    return {"status": status, "metrics": {}, **known, "error": {"message": reason} if reason else None}


def read_run(folder: Path, name: str) -> tuple[dict, pa.Table | None, pa.Table | None]:
    """One run folder as a row of the runs table, with its layers and curves tables (None without records).

    Never raises for what a folder holds: a finished run whose summary.json or tables cannot be read
    is status `corrupt` with the file and the problem in `error`; a folder without summary.json (a
    run that never finished, or one being run again at this moment) is `unfinished`.
    """
    try:
        summary = records.read_summary(folder)
        layers, curves = records.read_arrow(folder, records.LAYERS), records.read_arrow(folder, records.CURVES)
    except FileNotFoundError:  # no summary.json (the tables' absence is Unreadable)
        return _row(folder, name, _without_records(folder, "unfinished", None)), None, None
    except records.Unreadable as e:
        return _row(folder, name, _without_records(folder, "corrupt", str(e))), None, None
    except OSError as e:  # permission denied, an I/O error of the disk
        return _row(folder, name, _without_records(folder, "corrupt", _problem(e))), None, None
    return _row(folder, name, summary), layers, curves


def _row(folder: Path, name: str, summary: dict) -> dict:
    findings = (summary.get("diagnosis") or {}).get("findings") or []
    row = {"run": name, "path": str(folder), "status": summary["status"],
           "diagnosis": (summary.get("diagnosis") or {}).get("label"),
           "finding": findings[0]["message"] if findings else None,
           "wall_time_s": summary.get("wall_time_s"),
           "error": (summary.get("error") or {}).get("message"),
           "stopped_early": (summary.get("stopped_early") or {}).get("reason")}
    row.update({m: summary["metrics"].get(m) for m in METRICS})
    row["steps"] = summary["metrics"].get("steps")
    row.update({g: c for g, c in (summary.get("choices") or {}).items() if c is not None})
    config = summary.get("config") or {}
    if "init" not in row and config:  # run outside Hydra: name the scheme by its function
        target = (config.get("init") or {}).get("_target_", "")
        row["init"] = target.rsplit(".", 1)[-1].rstrip("_") or None
    row.update({k: v for k, v in flatten(config).items() if k not in WHERE_NOT_WHAT})
    row.update(_at_init(summary, config))
    return row


# Columns from a run's measurements and predictions at init (no dot in their names: they are not
# config keys, so never "swept").
THEORY_COLUMNS = ("chi1", "q_star", "xi_c")
JACOBIAN_COLUMNS = ("sv_mean", "sv_max", "sv_spread", "sq_mean")


def _at_init(summary: dict, config: dict) -> dict:
    """The mean-field numbers (theory) and the Jacobian's spectrum at init as runs-table columns,
    with the bias config's mean bias_mean and variance sigma_b2 (None when they are not numbers)."""
    from initlab.theory import bias_moments

    theory, jac = summary.get("theory") or {}, summary.get("jacobian") or {}
    row = {c: theory.get(c) for c in THEORY_COLUMNS if c in theory}
    if "applies" in theory:  # where the mean-field maps describe the run's weights, and why not
        row["theory_applies"], row["theory_why_not"] = theory["applies"], theory.get("why_not")
    row.update({f"jac_{c}": jac.get(c) for c in JACOBIAN_COLUMNS if c in jac})
    if config.get("bias"):
        row["bias_mean"], row["sigma_b2"] = bias_moments(config["bias"]) or (None, None)
    return row


@dataclass
class Sweep:
    """All runs found under some folders, as tidy tables."""

    runs: pd.DataFrame
    layers: pd.DataFrame
    curves: pd.DataFrame
    swept: list[str] = field(default_factory=list)  # config columns that differ between runs, seed last

    @property
    def keys(self) -> list[str]:
        """The swept configuration columns other than the seed: what a figure compares."""
        return [k for k in self.swept if k != SEED]

    def summary(self) -> pd.DataFrame:
        """Per swept configuration (seeds pooled): runs, mean and std of the final metrics, diagnosis counts."""
        runs = self.runs.assign(diagnosis=self.runs.diagnosis.fillna(self.runs.status))
        keys = self.keys or ["all"]
        if not self.keys:
            runs = runs.assign(all="all runs")
        # Rows in the order of their key values (numbers as numbers: depth 2 before 10).
        runs = runs.sort_values(keys, key=_sortable, kind="stable")
        # A run that lacks a key (NaN) still belongs in the table: group it under "n/a".
        runs[keys] = runs[keys].astype(object).where(runs[keys].notna(), "n/a")
        grouped = runs.groupby(keys, sort=False, dropna=False)
        table = grouped.agg(runs=("run", "size"), **{
            f"{m}_{stat}": (m, stat) for m in ("test_accuracy", "test_loss") for stat in ("mean", "std")},
            outliers=("outlier", "sum"))
        labels = pd.crosstab([runs[k] for k in keys], runs.diagnosis)
        labels.columns = [f"n_{c}" for c in labels.columns]
        return table.join(labels).reset_index()


def _sortable(column: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(column, errors="coerce")
    return numeric if numeric.notna().all() else column.astype(str)


def _join(tables: list[tuple[str, pa.Table]], runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The runs' tables as one (each row with its run's name and `columns` from the runs table)."""
    if not tables:
        return pd.DataFrame(columns=["run", "step", "epoch", "layer", "metric", "value"])
    named = [t.append_column("run", pa.array([name] * t.num_rows, pa.string())) for name, t in tables]
    table = pa.concat_tables(named, promote_options="permissive").to_pandas()
    table["metric"] = table["metric"].astype("category")
    table = table.merge(runs[["run", *columns]], on="run", how="left")
    for column in ("run", *columns):
        if not isinstance(table[column].dtype, pd.CategoricalDtype) and not pd.api.types.is_numeric_dtype(table[column]):
            table[column] = table[column].astype("category")
    return table


def flag_outliers(runs: pd.DataFrame, keys: list[str], gap: float = OUTLIER_GAP,
                  spread: float = OUTLIER_SPREAD) -> pd.DataFrame:
    """`runs` with `outlier` (bool) and `outlier_gap` (the sibling median's accuracy minus this run's).

    Siblings are the runs with the same values of `keys` (every swept key but the seed); a run
    needs at least two siblings with a final accuracy to be judged.
    """
    accuracy = pd.to_numeric(runs.test_accuracy, errors="coerce").to_numpy(dtype=float)
    codes = (runs.groupby([runs[k].astype(str) for k in keys], sort=False).ngroup().to_numpy() if keys
             else np.zeros(len(runs), dtype=int))
    gaps, flags = np.full(len(runs), np.nan), np.zeros(len(runs), dtype=bool)
    for code in np.unique(codes):
        members = np.flatnonzero((codes == code) & np.isfinite(accuracy))
        n = len(members)
        if n < 3:
            continue
        values = accuracy[members]
        # row i: the accuracies of every sibling but i (leave-one-out), one group at a time
        others = np.broadcast_to(values, (n, n))[~np.eye(n, dtype=bool)].reshape(n, n - 1)
        below = np.median(others, axis=1) - values
        gaps[members] = below
        flags[members] = (below > gap) & (below > spread * others.std(axis=1, ddof=1))
    return runs.assign(outlier=flags, outlier_gap=gaps)


def comparison_keys(swept: list[str]) -> tuple[list[str], list[str]]:
    """(compared, fixed): the swept keys of the COMPARED groups, and the others but the seed."""
    compared = [k for k in swept if k != SEED and k.split(".")[0] in COMPARED]
    return compared, [k for k in swept if k != SEED and k not in compared]


def flag_trailing(runs: pd.DataFrame, swept: list[str], gap: float = TRAIL_GAP) -> pd.DataFrame:
    """`runs` with `trails` (bool), `trail_gap` (the best comparable configuration's mean accuracy minus this
    one's) and `trails_best` (that configuration, as key=value pairs). Comparable: the same values of every
    swept key outside COMPARED (and the seed); a configuration's accuracy is its mean over seeds."""
    compared, fixed = comparison_keys(swept)
    quiet = runs.assign(trails=False, trail_gap=float("nan"), trails_best=None)
    if not compared:
        return quiet
    keys = fixed + compared
    frame = pd.DataFrame({k: runs[k].astype(str) for k in keys})
    frame["acc"] = pd.to_numeric(runs.test_accuracy, errors="coerce").to_numpy()
    configs = frame.groupby(keys, sort=False).acc.mean().rename("mean").reset_index()
    configs = configs[np.isfinite(configs["mean"])]
    if not len(configs):
        return quiet
    group = configs.groupby(fixed, sort=False)["mean"] if fixed else configs.groupby(np.zeros(len(configs)))["mean"]
    best_row = configs.loc[group.transform("idxmax")].reset_index(drop=True)
    configs = configs.reset_index(drop=True).assign(
        trail_gap=best_row["mean"].to_numpy() - configs["mean"].to_numpy(),
        trails_best=[", ".join(f"{k}={row[k]}" for k in compared) for _, row in best_row.iterrows()])
    found = frame.merge(configs[[*keys, "trail_gap", "trails_best"]], on=keys, how="left")
    return runs.assign(trails=(found.trail_gap > gap).to_numpy(), trail_gap=found.trail_gap.to_numpy(),
                       trails_best=found.trails_best.to_numpy())


def swept_keys(runs: pd.DataFrame) -> list[str]:
    """Config columns whose value differs between runs (group choices first, the seed last)."""
    config = [c for c in runs.columns if c in GROUPS or "." in c]
    # A value missing in some runs (a run outside Hydra has no choices) does not make a key swept.
    varying = [c for c in config if runs[c].dropna().astype(str).nunique() > 1]
    choice_first = sorted(varying, key=lambda c: (c == SEED, c not in GROUPS, varying.index(c)))
    # A choice and the keys it brings (init=normal brings init.std) vary together: keep the choice.
    return [c for c in choice_first
            if c in GROUPS or c == SEED or c.split(".")[0] not in choice_first
            or runs.groupby(c.split(".")[0])[c].nunique().max() > 1]


def load(paths: Iterable[str | Path]) -> Sweep:
    """Load every run under `paths` into a Sweep (runs, layers and curves tables)."""
    paths = [Path(p) for p in paths]
    folders = find_runs(paths)
    if not folders:
        raise FileNotFoundError(f"no runs (summary.json or .hydra/) under {', '.join(map(str, paths))}")
    base = Path(os.path.commonpath(folders)) if len(folders) > 1 else folders[0].parent
    names = [str(f.relative_to(base)) for f in folders]
    with ThreadPoolExecutor(READERS) as pool:  # the parquet reads overlap; a few ms each otherwise
        read = list(pool.map(read_run, folders, names))
    runs = pd.DataFrame([row for row, _, _ in read])
    swept = swept_keys(runs)
    runs = flag_outliers(runs, [k for k in swept if k != SEED]) if SEED in swept else runs.assign(
        outlier=False, outlier_gap=float("nan"))
    runs = flag_trailing(runs, swept)
    layers = [(name, table) for name, (_, table, _) in zip(names, read) if table is not None]
    curves = [(name, table) for name, (_, _, table) in zip(names, read) if table is not None]
    joined = list(dict.fromkeys(["init", *swept, "status", "diagnosis"]))
    joined = [c for c in joined if c in runs.columns]
    return Sweep(runs, _join(layers, runs, joined), _join(curves, runs, joined), swept)


def init_palette(sweep: Sweep) -> dict[str, tuple]:
    """One clearly distinct colour per init scheme, the same in every figure of a report."""
    from initlab.report.figures.facets import palette

    return palette(sorted(sweep.runs["init"].dropna().astype(str).unique()) if "init" in sweep.runs else [])


def markdown_table(table: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A DataFrame as a GitHub markdown table (no extra dependency)."""
    def cell(v) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else format(v, floatfmt)
        return "" if v is None else str(v)
    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body])
