"""Write a report: tables (CSV, parquet, markdown), figures (PNG) and one report.md page."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from initlab import plots
from initlab import report
from initlab.report import OUTLIER_GAP, OUTLIER_SPREAD, Sweep, init_palette, load, markdown_table

log = logging.getLogger("initlab")


def _runs_view(sweep: Sweep) -> pd.DataFrame:
    columns = ["run", "status", "diagnosis", "outlier", *dict.fromkeys(["init", *sweep.swept]),
               "test_accuracy", "test_loss", "train_loss", "steps", "wall_time_s"]
    return sweep.runs[[c for c in columns if c in sweep.runs]]


def _findings(sweep: Sweep) -> list[str]:
    """One line per run that is not healthy: its first finding, or its error."""
    lines = []
    for row in sweep.runs.itertuples():
        if row.status == "unfinished":
            lines.append(f"- `{row.run}`: never finished (no summary.json)"
                         + (f"; {row.error}" if isinstance(row.error, str) else ""))
        elif row.status == "corrupt":
            lines.append(f"- `{row.run}`: **corrupt**: {row.error} (a resumed sweep runs it again)")
        elif row.status == "failed":
            lines.append(f"- `{row.run}`: **failed**: {row.error}")
        elif isinstance(row.finding, str):
            lines.append(f"- `{row.run}` (**{row.diagnosis}**): {row.finding}")
    return lines


def _outliers(sweep: Sweep) -> list[str]:
    """One line per run far below the runs that differ from it only in seed."""
    lines = []
    for row in sweep.runs[sweep.runs.outlier].itertuples():
        lines.append(f"- `{row.run}` (**outlier**): test accuracy {row.test_accuracy:.2%}, {100 * row.outlier_gap:.1f} "
                     f"points below the median of the runs that differ from it only in `trainer.seed`"
                     f"{f' (its own diagnosis: {row.diagnosis})' if isinstance(row.diagnosis, str) else ''}")
    return lines


@dataclass
class Written:
    """Where a report went, and how many of its runs could not be read."""

    out: Path
    runs: int
    corrupt: int


def write_report(paths: Iterable[str | Path], out: Optional[str | Path] = None) -> Written:
    """Load every run under `paths` and write the report into `out` (default: <first path>/report).

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
    summary.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text(markdown_table(summary) + "\n")

    figures = plots.all_figures(sweep, init_palette(sweep), figures_dir)
    counts = sweep.runs.status.value_counts()
    status_line = ", ".join(f"{counts.get(s, 0)} {s}" for s in report.STATUSES)
    diagnoses = sweep.runs.diagnosis.fillna(sweep.runs.status).value_counts().rename_axis("diagnosis").reset_index()
    page = [
        "# initlab report", "",
        f"Runs from {', '.join(f'`{p}`' for p in paths)}: **{len(sweep.runs)} runs** ({status_line}).",
        f"Swept: {', '.join(f'`{k}`' for k in sweep.swept) or 'nothing (a single configuration)'}.", "",
        "## Summary (mean ± std over seeds)", "", markdown_table(summary), "",
        "## Diagnoses", "", markdown_table(diagnoses), "", *(_findings(sweep) or ["Every run is healthy."]), "",
        "## Outliers among seeds", "",
        *(_outliers(sweep) or [f"No run is more than {100 * OUTLIER_GAP:.0f} points (and {OUTLIER_SPREAD:g} standard "
                                "deviations) below the median of its seed siblings." if report.SEED in sweep.swept
                               else "Only one seed per configuration: no outliers to look for."]), "",
        "## Figures", "",
    ]
    if not figures:
        page += [f"No figures: none of the {len(sweep.runs)} runs has records yet ({status_line}).", ""]
    for title, path in figures.items():
        page += [f"### {title}", "", f"![{title}]({path.relative_to(out).as_posix()})", ""]
    page += ["## Runs", "", markdown_table(_runs_view(sweep)), ""]
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
