"""Reports that scale: which panels a figure draws (and says so), bands, the signature and
diagnosis views, report.md for many runs. Numbers against direct pandas/numpy computations."""

import itertools
import os
import re

import numpy as np
import pandas as pd
import pytest
import seaborn as sns

from initlab.report.figures import facets

from initlab.report.figures import heatmaps
from initlab.report.tables import load
from initlab.report.page import write_report

from conftest import draw_only
from test_cli import SMALL
from test_sweeps import run_cli


def runs_table(n_configs: int, seeds: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for c in range(n_configs):
        for s in range(seeds):
            loss = np.inf if c == 3 else rng.uniform(0.1, 3.0)  # config 3 diverged: no loss
            rows.append({"run": f"r{c}-{s}", "model.depth": c, "trainer.seed": s, "test_loss": loss})
    return pd.DataFrame(rows)


def test_up_to_twelve_configurations_every_panel_is_drawn_in_key_order():
    chosen = facets.choose(runs_table(12), ["model.depth"])
    assert chosen.shown == [f"depth={c}" for c in range(12)] and chosen.note == ""


def test_past_twelve_the_six_worst_and_six_best_by_median_loss_are_drawn_and_said():
    runs = runs_table(20)
    chosen = facets.choose(runs, ["model.depth"])
    median = runs.replace(np.inf, np.nan).groupby("model.depth").test_loss.median().fillna(np.inf)
    ranked = [f"depth={c}" for c in median.sort_values(ascending=False, kind="stable").index]
    assert chosen.shown == ranked[:6] + ranked[-6:] and chosen.shown[0] == "depth=3"  # the diverged one is worst
    assert chosen.note.startswith("12 of 20 configurations: the 6 worst and the 6 best by final test loss")
    assert chosen.total == 20


def test_bands_are_median_with_quartiles_past_a_handful_else_the_whole_range():
    rng = np.random.default_rng(1)
    many = pd.DataFrame({"g": ["a"] * 9 + ["b"] * 7, "value": rng.normal(size=16)})
    out = facets.band(many, ["g"]).set_index("g")
    a = many[many.g == "a"].value
    assert out.loc["a", "center"] == pytest.approx(np.median(a))
    assert (out.loc["a", "low"], out.loc["a", "high"]) == pytest.approx(tuple(np.percentile(a, [25, 75])))
    few = pd.DataFrame({"g": ["a"] * 4, "value": [1.0, 2.0, 1e30, np.inf]})  # a non-finite value is left out
    out = facets.band(few, ["g"]).iloc[0]
    assert (out.center, out.low, out.high, out.n) == pytest.approx((2.0, 1.0, 1e30, 3))


def test_twelve_inits_get_colours_as_distinct_as_tab10s_own():
    def closest(colours):
        return min(np.linalg.norm(np.subtract(a, b)) for a, b in itertools.combinations(colours, 2))

    names = [f"init{i}" for i in range(18)]
    floor = closest(sns.color_palette("tab10"))
    assert closest(list(facets.palette(names[:12]).values())) >= floor - 1e-9
    assert closest(list(facets.palette(names).values())) >= 0.2
    assert closest(sns.color_palette("tab20", 12)) < floor  # what it replaced: pairs of one hue
    assert facets.dashes(names)["init11"] != facets.dashes(names)["init0"]


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    """4 inits x 4 learning rates x 2 seeds: 16 configurations, 32 runs, mostly not healthy in 4 steps."""
    root = tmp_path_factory.mktemp("grid")
    run_cli("-m", "hydra/launcher=vectorized", *SMALL, "trainer.max_steps=4", "trainer.log_every=1",
            "init=zeros,normal,kaiming_normal,he2015/small_normal", "lr.value=1.0,0.1,0.01,0.001", "trainer.seed=0,1",
            "model.depth=3", "hydra.sweep.dir=sweep", cwd=root)
    return root / "sweep"


def test_signatures_equal_a_direct_computation_from_each_runs_table(grid_sweep):
    sweep = load([grid_sweep])
    table = heatmaps.signatures(sweep).set_index("run")
    for run in sweep.runs.run[:8]:
        norms = sweep.layers[(sweep.layers.run == run) & (sweep.layers.metric == "weight_grad_norm")]
        for moment, step in (("start", norms.step.min()), ("end", norms.step.max())):
            at = norms[norms.step == step].set_index("layer").value
            direct = np.log10(at[0] / at[at.index.max()]) if at[0] > 0 and at[at.index.max()] > 0 else np.nan
            got = table.loc[run, f"signature_{moment}"]
            assert (np.isnan(direct) and np.isnan(got)) or got == pytest.approx(direct), (run, moment)


def test_the_grid_layout_takes_init_rows_and_the_key_with_most_values_as_columns(grid_sweep):
    grid = heatmaps.layout(load([grid_sweep]))
    assert (grid.rows, grid.columns, grid.panels, grid.pooled) == ("init", "lr.value", None, [])


def test_a_large_grids_report_says_what_each_figure_shows_and_groups_findings(grid_sweep, tmp_path, monkeypatch):
    # the three heatmaps this looks at are drawn; the others (~3 s) are the slow test's below
    draw_only(monkeypatch, "gradient heatmap", "signature", "diagnosis")
    out = write_report([grid_sweep], tmp_path / "report").out
    page = (out / "report.md").read_text()
    sweep = load([grid_sweep])
    # the per-configuration heatmap shows 12 of 16 and says which, under its heading
    heatmap = page.split("### Gradient-norm heatmap")[1].split("###")[0]
    assert "*Shows 12 of 16 configurations: the 6 worst and the 6 best by final test loss" in heatmap
    for name in ("signature_heatmap.png", "diagnosis_heatmap.png"):
        assert f"figures/{name}" in page and (out / "figures" / name).stat().st_size > 10_000
    # more than 20 runs are not healthy: one paragraph per finding, counts adding up, one example each
    unhealthy = sweep.runs[sweep.runs.diagnosis != "healthy"]
    assert len(unhealthy) > 20
    groups = re.findall(r"^- \*\*(\w+)\*\*: (\d+) runs in (\d+) configuration", page, re.M)
    assert {g: int(n) for g, n, _ in groups} == unhealthy.diagnosis.value_counts().to_dict()
    # every link points at a run folder that exists
    links = re.findall(r"\]\(<([^>]+)>\)", page)
    assert links and all((out / link).is_dir() for link in links)
    # the summary on the page starts with the worst configuration
    summary = page.split("## Summary")[1].split("## Diagnoses")[0]
    first = [line for line in summary.splitlines() if line.startswith("|")][2]  # after the header and the rule
    worst = sweep.summary().test_accuracy_mean.min()
    assert f"| {worst:.4g} |" in first


@pytest.mark.slow  # two reports of a large grid; test_a_large_grids_report_says_what_each_figure_shows_and_groups_findings stays fast
def test_figure_notes_reach_report_md_only_when_something_is_left_out(tmp_path, grid_sweep):
    out = write_report([grid_sweep], tmp_path / "r").out
    page = (out / "report.md").read_text()
    # the per-configuration heatmap leaves configurations out; the prediction figure, the zeros runs (outside the theory)
    assert page.count("*Shows ") == 2
    assert "no prediction for 8 run(s) outside the theory (zeros: mean-field theory needs random weights" in page
    assert os.path.exists(out / "figures" / "grad_heatmap.png")
