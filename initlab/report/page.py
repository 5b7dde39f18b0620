"""Write a report: tables (CSV, parquet, markdown), figures (PNG) and one report.md page."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from initlab.report.figures import facets as fx
from initlab import loggers
from initlab.report.figures import catalogue
from initlab.report import tables as report, width
from initlab.config.errors import ConfigError
from initlab.config.loggers import KNOWN as KNOWN_LOGGERS
from initlab.cores import usable_cores
from initlab.report.tables import (OUTLIER_GAP, OUTLIER_SPREAD, TRAIL_GAP, Sweep, comparison_keys, init_palette,
                                   load, markdown_table)
from initlab.store.keys import COMPARED

log = logging.getLogger("initlab")


MAX_LINES = 20  # past this many non-healthy runs, report.md groups them by finding
MAX_ROWS = 64  # past this many runs, report.md's runs table shows the worst (runs.csv has all)


def worst_first(table: pd.DataFrame, accuracy: str) -> pd.DataFrame:
    """Rows by final accuracy, lowest first; rows without one (diverged, failed, unfinished) before all."""
    key = pd.to_numeric(table[accuracy], errors="coerce").fillna(-1.0)
    return table.assign(_key=key).sort_values("_key", kind="stable").drop(columns="_key")


def link(row, out: Path) -> str:
    """The run's name, linked to its folder (relative to the report, so the page moves with the sweep)."""
    return f"[`{row.run}`](<{Path(os.path.relpath(row.path, out)).as_posix()}>)"


def _runs_view(sweep: Sweep, out: Path) -> tuple[pd.DataFrame, str]:
    columns = ["run", "status", "diagnosis", "outlier", "trails", *dict.fromkeys(["init", *sweep.swept]),
               "test_accuracy", "test_loss", "train_loss", "steps", "wall_time_s"]
    runs = worst_first(sweep.runs, "test_accuracy")
    note = ""
    if len(runs) > MAX_ROWS:
        runs = runs.head(MAX_ROWS)
        note = f"The {MAX_ROWS} runs with the lowest final accuracy of {len(sweep.runs)} (every run: `runs.csv`)."
    view = runs[[c for c in columns if c in runs]].assign(run=[link(r, out) for r in runs.itertuples()])
    return view, note


def _problem(row) -> str | None:
    """What is wrong with a run, in words (None for a healthy one)."""
    if row.status == "unfinished":
        return "never finished (no summary.json)" + (f"; {row.error}" if isinstance(row.error, str) else "")
    if row.status == "corrupt":
        return f"**corrupt**: {row.error} (a resumed sweep runs it again)"
    if row.status == "failed":
        return f"**failed**: {row.error}"
    if isinstance(row.finding, str):
        return f"(**{row.diagnosis}**): {row.finding}"
    return None


def _findings(sweep: Sweep, out: Path) -> list[str]:
    """One line per run that is not healthy, or past MAX_LINES one paragraph per finding: how many
    runs in how many configurations, and one example with its message."""
    runs = worst_first(sweep.runs, "test_accuracy")
    problems = [(row, text) for row in runs.itertuples() if (text := _problem(row)) is not None]
    if len(problems) <= MAX_LINES:
        return [f"- {link(row, out)}: {text}" if not text.startswith("(") else f"- {link(row, out)} {text}"
                for row, text in problems]
    groups = []
    flagged = runs.loc[[row.Index for row, _ in problems]]
    why = {row.Index: text for row, text in problems}
    keys = sweep.keys
    for name, members in flagged.groupby(flagged.diagnosis.fillna(flagged.status).astype(str), sort=False):
        configs = members[keys].astype(str).drop_duplicates() if keys else members.head(1)
        shown = ["; ".join(f"{fx.short(k)}={v}" for k, v in zip(keys, c)) for c in configs.itertuples(index=False)]
        example = next(members.itertuples())
        listed = ", ".join(f"`{s}`" for s in shown[:8]) + (f" and {len(shown) - 8} more" if len(shown) > 8 else "")
        reason = example.finding if isinstance(example.finding, str) else why[example.Index]
        groups.append((len(members), f"- **{name}**: {len(members)} runs in {len(configs)} configuration(s)"
                       + (f" ({listed})" if keys else "") + f". Example {link(example, out)}: {reason}"))
    groups.sort(key=lambda g: -g[0])  # the most frequent finding first
    return [f"{len(problems)} runs are not healthy; by finding, each with one example (its worst run):", "",
            *(line for _, line in groups)]


def _trailing(sweep: Sweep) -> list[str]:
    """One line per configuration far behind the best one it can be compared with (tables.flag_trailing)."""
    runs = sweep.runs[sweep.runs.trails]
    compared, fixed = comparison_keys(sweep.swept)
    lines = []
    for _, group in runs.groupby([runs[k].astype(str) for k in fixed + compared], sort=False):
        row = group.iloc[0]
        config = ", ".join(f"`{k}={row[k]}`" for k in compared)
        where = f" (at {', '.join(f'`{k}={row[k]}`' for k in fixed)})" if fixed else ""
        acc = pd.to_numeric(group.test_accuracy, errors="coerce").mean()
        labels = ", ".join(sorted(set(group.diagnosis.dropna().astype(str))))
        lines.append(f"- {config}{where} (**trails**): test accuracy {acc:.2%} over {len(group)} run(s), "
                     f"{100 * row.trail_gap:.1f} points below the best comparable configuration, `{row.trails_best}`"
                     f" (diagnosis: {labels or 'none'})")
    return lines


def _outliers(sweep: Sweep, out: Path) -> list[str]:
    """One line per run far below the runs that differ from it only in seed."""
    lines = []
    for row in sweep.runs[sweep.runs.outlier].itertuples():
        lines.append(f"- {link(row, out)} (**outlier**): test accuracy {row.test_accuracy:.2%}, {100 * row.outlier_gap:.1f} "
                     f"points below the median of the runs that differ from it only in `trainer.seed`"
                     f"{f' (its own diagnosis: {row.diagnosis})' if isinstance(row.diagnosis, str) else ''}")
    return lines


@dataclass
class Written:
    """Where a report went, and how many of its runs could not be read."""

    out: Path
    runs: int
    corrupt: int


def write_report(paths: Iterable[str | Path], out: Optional[str | Path] = None, workers: int = 1) -> Written:
    """Load every run under `paths` and write the report into `out` (default: <first path>/report),
    its figures drawn by `workers` processes (catalogue.all_figures: more than 1 only from a process
    that runs nothing else, as initlab-report).

    Damaged runs (status `corrupt`) are listed with the file and the problem; every readable run is
    reported, and the last line printed says how many were damaged.
    """
    paths = [Path(p) for p in paths]
    sweep = load(paths)
    out = Path(out) if out else paths[0] / "report"
    figures_dir = out / "figures"
    out.mkdir(parents=True, exist_ok=True)
    sweep.runs.to_csv(out / "runs.csv", index=False)
    sweep.runs.to_parquet(out / "runs.parquet", index=False)
    summary = sweep.summary()
    summary.to_csv(out / "summary.csv", index=False)  # in the order of the keys' values
    summary = worst_first(summary, "test_accuracy_mean")  # the pages: what went wrong first
    (out / "summary.md").write_text(markdown_table(summary) + "\n")

    widths = width.analyse(sweep)
    figures = catalogue.all_figures(sweep, init_palette(sweep), figures_dir, widths, workers)
    counts = sweep.runs.status.value_counts()
    status_line = ", ".join(f"{counts.get(s, 0)} {s}" for s in report.STATUSES)
    diagnoses = sweep.runs.diagnosis.fillna(sweep.runs.status).value_counts().rename_axis("diagnosis").reset_index()
    page = [
        "# initlab report", "",
        f"Runs from {', '.join(f'`{p}`' for p in paths)}: **{len(sweep.runs)} runs** ({status_line}).",
        f"Swept: {', '.join(f'`{k}`' for k in sweep.swept) or 'nothing (a single configuration)'}.", "",
        "## Summary (mean ± std over seeds; lowest accuracy first; `n_<label>`: runs per diagnosis)", "",
        markdown_table(summary), "",
        "## Diagnoses", "", markdown_table(diagnoses), "", *(_findings(sweep, out) or ["Every run is healthy."]), "",
        "## Outliers among seeds", "",
        *(_outliers(sweep, out) or [f"No run is more than {100 * OUTLIER_GAP:.0f} points (and {OUTLIER_SPREAD:g} standard "
                                "deviations) below the median of its seed siblings." if report.SEED in sweep.swept
                               else "Only one seed per configuration: no outliers to look for."]), "",
        f"## Configurations far behind the best (more than {100 * TRAIL_GAP:.0f} points below the best one "
        f"that differs only in {', '.join(f'`{g}`' for g in COMPARED)})", "",
        *(_trailing(sweep) or ["None." if comparison_keys(sweep.swept)[0]
                              else f"Nothing to compare: the sweep varies none of {', '.join(COMPARED)}."]), "",
        *_width_section(widths, out),
        *_transfer_section(widths, out),
        "## Figures", "",
    ]
    if not figures:
        page += [f"No figures: none of the {len(sweep.runs)} runs has records yet ({status_line}).", ""]
    for title, drawn in figures.items():
        page += [f"### {title}", "", *([f"*Shows {drawn.note}.*", ""] if drawn.note else []),
                 f"![{title}]({drawn.path.relative_to(out).as_posix()})", ""]
    view, note = _runs_view(sweep, out)
    page += ["## Runs", "", *([note, ""] if note else []), markdown_table(view), ""]
    (out / "report.md").write_text("\n".join(page))

    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40):
        print(f"{len(sweep.runs)} runs: {status_line}")
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"report: {out / 'report.md'}")
    corrupt = int(counts.get("corrupt", 0))
    if corrupt:
        print(f"initlab-report: {corrupt} of {len(sweep.runs)} runs damaged (status corrupt): the file and the "
              f"problem of each are in {out / 'report.md'} and runs.csv; a resumed sweep runs them again")
    return Written(out, len(sweep.runs), corrupt)


def _transfer_section(widths: width.WidthTables, out: Path) -> list[str]:
    """The best learning rate per width (report/width.py) of a sweep that varies model.width and lr.value."""
    if widths.best is None:
        return []
    keys, best = widths.transfer_keys, widths.best
    best.to_csv(out / "lr_transfer.csv", index=False)
    by = keys or (lambda _: "all runs")
    drift = best.groupby(by, sort=True).agg(widths=("width", "size"), best_lr_min=("best_lr", "min"),
                                             best_lr_max=("best_lr", "max"), drift_octaves=("drift_octaves", "first")
                                             ).reset_index().rename(columns={"index": "runs of"})
    return ["## Learning-rate transfer (width)", "",
            "Per width, the learning rate with the lowest final training loss (mean over seeds; a diverged run is "
            "never the best), and its drift across widths in octaves (log2 of the largest best rate over the "
            "smallest; 0: the best rate transfers). All of them: `lr_transfer.csv`.", "",
            markdown_table(drift, ".4g"), "",
            markdown_table(best.drop(columns=["best_lr_log2", "drift_octaves"]), ".4g"), ""]


def _width_section(widths: width.WidthTables, out: Path) -> list[str]:
    """The coord check (report/width.py) of a sweep that varies model.width: its tables as CSV, its findings."""
    if widths.coord is None:
        return []
    table, keys, slopes = widths.coord, widths.coord_keys, widths.slopes
    table.to_csv(out / "coord_check.csv", index=False)
    slopes.to_csv(out / "coord_slopes.csv", index=False)
    found = width.findings(slopes, keys)
    widest = slopes.groupby([*keys, "layer", "readout"], sort=True).slope.agg(
        lambda s: s.iloc[s.abs().argmax()] if s.notna().any() else float("nan")).reset_index()
    return ["## Width (coord check)", "",
            f"Each layer's l1 (mean |pre-activation| over a step's batch, as microsoft/mup's coord check) against "
            f"model.width, fitted as width^slope per step over seeds (`coord_check.csv`, `coord_slopes.csv`). "
            f"A layer is **width_unstable** at a step where |slope| > {width.WIDTH_SLOPE:g}.", "",
            *(found or [f"No layer's l1 follows width past |slope| {width.WIDTH_SLOPE:g} at any recorded step."]), "",
            "The steepest slope of each layer over the recorded steps:", "",
            markdown_table(widest.rename(columns={"slope": "steepest slope"}), ".3f"), ""]


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of processes, 1 or more")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """`initlab-report PATH [PATH ...] [--out DIR]`: tables, figures and report.md for some sweeps.

    Exit code 0, 1 when some runs are damaged (status corrupt), 2 when a PATH holds no runs.
    """
    parser = argparse.ArgumentParser(prog="initlab-report", description=main.__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="a sweep folder, a run folder, or a folder of sweeps")
    parser.add_argument("--out", help="where to write (default: <first PATH>/report)")
    parser.add_argument("--tensorboard", metavar="DIR", help="also write every run's TensorBoard events into DIR/<run>")
    parser.add_argument("--mlflow", metavar="URI", help="also log every run into the MLflow store URI "
                        "(a multirun: a parent run with the report's files, a child per job)")
    parser.add_argument("--workers", type=_workers, default=None, metavar="N",
                        help="processes drawing the figures at once (default: one per usable core, at most 10; "
                             "1 draws them in this process)")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.paths, args.out, args.workers or usable_cores())
        node = {}
        if args.tensorboard:
            node["tensorboard"] = {"_target_": KNOWN_LOGGERS["tensorboard"][0], "log_dir": args.tensorboard}
        if args.mlflow:
            node["mlflow"] = {"_target_": KNOWN_LOGGERS["mlflow"][0], "tracking_uri": args.mlflow}
        if node:
            exported = loggers.export(report.find_runs(args.paths), node, written.out)
            print(f"exported {exported} runs to {' and '.join(filter(None, [args.tensorboard, args.mlflow]))}")
    except (FileNotFoundError, ConfigError) as e:
        print(f"initlab-report: {e}", file=sys.stderr)
        return 2
    return 1 if written.corrupt else 0


if __name__ == "__main__":
    sys.exit(main())
