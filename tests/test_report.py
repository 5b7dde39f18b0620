"""initlab-report on real (small, synthetic) sweeps: tables equal the runs' own records, figures exist."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import matplotlib.pyplot as plt
from PIL import Image

from initlab.report.figures import heatmaps

from initlab.report.figures import lines as plots
from initlab.train import loop as training_module
from initlab.report.tables import Sweep, init_palette, load
from initlab.report import page as page_module
from initlab.report.page import write_report
from initlab.train.runner import run

from conftest import draw_only, make_config
from test_cli import SMALL, initlab

FIGURES = ("curves.png", "gradient_flow.png", "backprop_flow.png", "grad_heatmap.png", "accuracy_heatmap.png",
           "signature_heatmap.png", "diagnosis_heatmap.png", "dead_units.png", "theory_preact.png")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """2 inits x 2 learning rates, run by the real command, with the report callback enabled."""
    root = tmp_path_factory.mktemp("sweep")
    result = initlab("-m", *SMALL, "trainer.max_steps=12", "trainer.log_every=2", "init=xavier_uniform,kaiming_normal",
                     "lr.value=0.1,0.01", "hydra/callbacks=report", "hydra.sweep.dir=sweep", cwd=root)
    (root / "sweep-stderr.txt").write_text(result.stderr)
    return root / "sweep"


def test_runs_table_equals_each_runs_summary(sweep_dir):
    sweep = load([sweep_dir])
    assert len(sweep.runs) == 4
    assert sweep.swept == ["init", "lr.value"]
    for row in sweep.runs.itertuples():
        summary = json.loads((sweep_dir / row.run / "summary.json").read_text())
        assert row.status == summary["status"] and row.diagnosis == summary["diagnosis"]["label"]
        assert row.init == summary["choices"]["init"]
        assert sweep.runs.loc[row.Index, "lr.value"] == summary["config"]["lr"]["value"]
        for metric in ("test_accuracy", "test_loss", "train_loss"):
            assert getattr(row, metric) == summary["metrics"][metric]


def test_layers_and_curves_carry_the_swept_columns(sweep_dir):
    sweep = load([sweep_dir])
    one = sweep.runs.iloc[0]
    own = pd.read_parquet(sweep_dir / one.run / "layers.parquet")
    mine = sweep.layers[sweep.layers.run == one.run]
    assert len(mine) == len(own) and np.allclose(mine.value.to_numpy(), own.value.to_numpy())
    assert (mine["init"].astype(str) == one["init"]).all() and (mine["lr.value"] == one["lr.value"]).all()
    assert set(sweep.curves.run.astype(str)) == set(sweep.runs.run)


def test_summary_mean_equals_a_direct_pandas_computation(sweep_dir):
    sweep = load([sweep_dir])
    summary = sweep.summary()
    direct = sweep.runs.groupby(["init", "lr.value"]).test_accuracy.mean()
    for _, row in summary.iterrows():
        assert row["test_accuracy_mean"] == pytest.approx(direct[(row["init"], row["lr.value"])])
    assert summary.runs.sum() == 4
    assert summary.filter(like="n_").sum().sum() == 4


def test_report_files_figures_and_page(sweep_dir):
    # the callback wrote the report and said nothing failed (it once logged an error after writing it)
    assert "report failed" not in (sweep_dir.parent / "sweep-stderr.txt").read_text()
    out = sweep_dir / "report"  # written by the callback at the end of the multirun
    for name in ("runs.csv", "runs.parquet", "summary.csv", "summary.md", "report.md"):
        assert (out / name).stat().st_size > 0, name
    for name in FIGURES:
        image = Image.open(out / "figures" / name)
        assert image.size[0] >= 500 and image.size[1] >= 250, name
        assert np.asarray(image.convert("L")).std() > 5, f"{name} looks blank"
    page = (out / "report.md").read_text()
    for run_name in load([sweep_dir]).runs.run:  # each run in the table, linked to its folder
        assert f"| [`{run_name}`](<../{run_name}>) |" in page and (out / ".." / run_name).is_dir()
    assert all(f"figures/{name}" in page for name in FIGURES)


def test_each_accuracy_panel_spans_the_steps_of_the_loss_panel_above_it(sweep_dir, tmp_path, monkeypatch):
    """The runs evaluate a few times, late in their 12 steps: the accuracy panels still show steps 0 to
    the end (the loss panels' axis), not a few steps around the evaluations."""
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path, note="": drawn.append(fig))
    sweep = load([sweep_dir])
    plots.training_curves(sweep, init_palette(sweep), tmp_path / "curves.png")
    axes = [ax for ax in drawn[0].axes if ax.get_visible() and ax.get_ylabel()]
    loss = [ax for ax in axes if ax.get_ylabel().startswith("training loss")]
    accuracy = [ax for ax in axes if ax.get_ylabel().startswith("test accuracy")]
    assert len(loss) == len(accuracy) == 2
    for above, below in zip(loss, accuracy):
        assert below.get_xlim() == above.get_xlim()
        low, high = above.get_xlim()
        assert low <= 0 and high >= sweep.curves.step.max()
        assert all(low <= step <= high for line in below.lines for step in line.get_xdata())
    plt.close(drawn[0])


def test_a_run_that_diverged_in_its_first_bin_of_steps_is_a_dot_on_the_whole_run_length(tmp_path, monkeypatch):
    # 200 steps are drawn in bins of 3: a run whose loss overflows at step 3 has one finite bin, and a
    # line of one point draws nothing. Its panel (every run there diverged) showed an empty axis
    # around step 0; now a dot, on the sweep's 0-199 steps.
    steps = np.arange(200)
    runs = pd.DataFrame({"run": ["a", "b"], "init": ["kaiming_normal", "normal"], "lr.value": [0.01, 10.0],
                         "status": ["completed", "diverged"], "test_loss": [0.3, np.nan],
                         "test_accuracy": [0.9, np.nan], "diagnosis": ["healthy", "diverged"]})
    curves = pd.concat([
        pd.DataFrame({"run": "a", "step": steps, "epoch": 1, "metric": "train_loss", "value": 2.0 / (1 + steps)}),
        pd.DataFrame({"run": "b", "step": [0, 1, 2, 3], "epoch": 1, "metric": "train_loss",
                      "value": [2.3, 1e9, 1e30, np.inf]}),
        pd.DataFrame({"run": ["a"], "step": [199], "epoch": [1], "metric": ["test_accuracy"], "value": [0.9]})],
        ignore_index=True)
    sweep = Sweep(runs, pd.DataFrame(columns=["run", "step", "epoch", "layer", "metric", "value"]), curves,
                  ["init", "lr.value"])
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path, note="": drawn.append(fig))
    plots.training_curves(sweep, init_palette(sweep), tmp_path / "curves.png")
    panel = {ax.get_title(): ax for ax in drawn[0].axes if ax.get_title()}
    [dot] = panel["lr=10.0"].lines
    assert len(dot.get_xdata()) == 1 and dot.get_marker() == "o"
    assert dot.get_ydata()[0] == pytest.approx(np.mean([2.3, 1e9, 1e30]))  # the bin's finite mean
    low, high = panel["lr=10.0"].get_xlim()
    assert low <= 0 and high >= 199
    plt.close(drawn[0])


@pytest.mark.parametrize("figure", ["accuracy_heatmap", "signature_heatmap", "diagnosis_heatmap"])
def test_heatmap_row_names_read_across(sweep_dir, tmp_path, monkeypatch, figure):
    # Rotated (seaborn's default for long names), the init names of neighbouring rows ran into each other.
    drawn = []
    monkeypatch.setattr(heatmaps, "save", lambda fig, path, note="": drawn.append(fig))
    getattr(heatmaps, figure)(load([sweep_dir]), tmp_path / "figure.png")
    labelled = [ax for ax in drawn[0].axes if ax.get_ylabel() == "init"]
    assert labelled and all(label.get_rotation() == 0 for ax in labelled for label in ax.get_yticklabels())
    plt.close(drawn[0])


def test_failed_and_unfinished_runs_are_reported(sweep_dir, tmp_path, monkeypatch):
    # The tables and the page's lines are what this proves: the figures (drawn from the same tables, ~2.4 s)
    # are not drawn (test_report_files_figures_and_page draws them)
    monkeypatch.setattr(page_module.catalogue, "all_figures", lambda *a, **k: {})
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_dir, sweep, ignore=shutil.ignore_patterns("report"))
    sorted(sweep.glob("*/summary.json"))[1].unlink()  # killed half way: its config is there, no summary
    monkeypatch.setattr(training_module, "evaluate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        run(make_config(*SMALL, "trainer.max_steps=3"), output_dir=sweep / "9")
    out = write_report([sweep]).out
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs.status) == ["completed"] * 3 + ["failed", "unfinished"]
    unfinished = runs[runs.status == "unfinished"].iloc[0]
    assert unfinished["init"] in ("xavier_uniform", "kaiming_normal") and not pd.isna(unfinished["lr.value"])
    page = (out / "report.md").read_text()
    assert "1 failed, 1 unfinished" in page and "boom" in page and "never finished" in page


@pytest.mark.slow  # a second sweep through the CLI
def test_two_sweeps_with_different_keys_combine(sweep_dir, tmp_path):
    initlab("-m", *SMALL, "trainer.max_steps=6", "model.depth=1,3", "hydra.sweep.dir=other", cwd=tmp_path)
    sweep = load([sweep_dir, tmp_path / "other"])
    assert len(sweep.runs) == 6
    assert {"init", "lr.value", "model.depth"} <= set(sweep.swept)
    assert sweep.runs["model.depth"].notna().all()


@pytest.mark.slow  # three initlab-report processes; the fast part checks the same report in-process (test_report_files_figures_and_page)
def test_report_command(sweep_dir, tmp_path):
    result = subprocess.run([sys.executable, "-c", "import sys; from initlab.cli import report_main; "
                             "sys.exit(report_main())", str(sweep_dir), "--out", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "4 runs: 4 completed" in result.stdout and (tmp_path / "r" / "report.md").exists()
    # the figures drawn by two processes at once are those one process draws, to the byte
    for workers in ("1", "2"):
        drawn = subprocess.run([sys.executable, "-c", "import sys; from initlab.cli import report_main; "
                                "sys.exit(report_main())", str(sweep_dir), "--out", str(tmp_path / workers),
                                "--workers", workers], capture_output=True, text=True, timeout=300)
        assert drawn.returncode == 0, drawn.stderr
    names = sorted(p.name for p in (tmp_path / "1" / "figures").glob("*.png"))
    assert names == sorted(FIGURES)
    assert all((tmp_path / "1" / "figures" / n).read_bytes() == (tmp_path / "2" / "figures" / n).read_bytes()
               for n in names)
    assert (tmp_path / "1" / "report.md").read_text() == (tmp_path / "2" / "report.md").read_text()
    missing = subprocess.run([sys.executable, "-c", "import sys; from initlab.cli import report_main; "
                              "sys.exit(report_main())", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("initlab-report:")


@pytest.mark.slow  # initlab-report in a process of its own, twice
def test_a_large_sweeps_report_is_written_by_initlab_report_in_a_process_of_its_own(sweep_dir, tmp_path, monkeypatch,
                                                                                     caplog):
    from omegaconf import OmegaConf

    from initlab import cores
    from initlab.sweep.callbacks import SweepEnd

    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("report"))
    ended = OmegaConf.create({"hydra": {"sweep": {"dir": str(copy)}}})
    monkeypatch.setattr(cores, "usable_cores", lambda: 2)  # (on one core it is written in the sweep's process)
    with caplog.at_level("INFO", logger="initlab"):
        SweepEnd(report=True, report_process_from=4).on_multirun_end(ended)
    assert "written by initlab-report in a process of its own" in caplog.text
    # the same figures, to the byte, as the report the sweep itself wrote in its process
    names = sorted(p.name for p in (sweep_dir / "report" / "figures").glob("*.png"))
    assert names == sorted(FIGURES)
    for name in names:
        assert (copy / "report" / "figures" / name).read_bytes() == (sweep_dir / "report" / "figures" / name).read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(copy / "report" / "summary.csv"),
                                  pd.read_csv(sweep_dir / "report" / "summary.csv"))
    caplog.clear()
    shutil.rmtree(copy / "report")
    with caplog.at_level("INFO", logger="initlab"):
        SweepEnd(report=True, report_process_from=5).on_multirun_end(ended)  # 4 runs: below it
    assert "process of its own" not in caplog.text and (copy / "report" / "report.md").exists()


def test_outliers_among_seeds_against_a_direct_computation():
    from initlab.report.tables import flag_outliers

    runs = pd.DataFrame({"run": list("abcdefg"), "init": ["k"] * 5 + ["n"] * 2, "trainer.seed": [0, 1, 2, 3, 4, 0, 1],
                         "test_accuracy": [0.9513, 0.9456, 0.9535, 0.9536, 0.7706, 0.2, 0.9]})
    flagged = flag_outliers(runs, ["init"])
    # Seed 4 of "k": the median of its four siblings minus its own accuracy.
    assert flagged.outlier.tolist() == [False, False, False, False, True, False, False]
    assert flagged.outlier_gap[4] == pytest.approx(pd.Series([0.9513, 0.9456, 0.9535, 0.9536]).median() - 0.7706)
    assert flagged.outlier_gap[5:].isna().all()  # two runs are too few to call either one an outlier


def test_a_configuration_far_behind_the_best_of_its_architecture_trails():
    from initlab.report.tables import TRAIL_GAP, flag_trailing

    # depth 2: small_normal (mean 0.5) trails kaiming (mean 0.9); xavier 4 points apart stays quiet;
    # depth 5 is its own comparison (another architecture): its best is xavier, nobody trails by 15 points
    runs = pd.DataFrame({
        "run": list("abcdefghij"),
        "init": ["kaiming", "kaiming", "small", "small", "xavier", "xavier", "kaiming", "small", "xavier", "xavier"],
        "model.depth": [2] * 6 + [5] * 4, "trainer.seed": [0, 1, 0, 1, 0, 1, 0, 0, 0, 1],
        "test_accuracy": [0.91, 0.89, 0.45, 0.55, 0.87, 0.85, 0.80, 0.70, 0.84, float("nan")]})
    flagged = flag_trailing(runs, ["init", "model.depth", "trainer.seed"])
    assert flagged.trails.tolist() == [False, False, True, True, False, False, False, False, False, False]
    assert flagged.trail_gap[2] == pytest.approx(0.90 - 0.50) and flagged.trails_best[2] == "init=kaiming"
    assert flagged.trail_gap[7] == pytest.approx(0.84 - 0.70) and flagged.trail_gap[7] < TRAIL_GAP
    assert flagged.trails_best[7] == "init=xavier"
    # a sweep over nothing compared (depth alone) has nothing to say
    assert not flag_trailing(runs, ["model.depth"]).trails.any()


def test_outliers_section_of_the_page(sweep_dir):
    page = (sweep_dir / "report" / "report.md").read_text()
    assert "## Outliers among seeds" in page and "Only one seed per configuration" in page
    runs = pd.read_csv(sweep_dir / "report" / "runs.csv")
    assert {"outlier", "outlier_gap"} <= set(runs.columns) and not runs.outlier.any()
    assert "## Configurations far behind the best" in page
    assert {"trails", "trail_gap", "trails_best"} <= set(runs.columns)


def _looks_drawn(path):
    image = Image.open(path)
    return image.size[0] >= 500 and image.size[1] >= 250 and np.asarray(image.convert("L")).std() > 5


@pytest.mark.slow  # a sweep of its own through the CLI
def test_theory_figures_of_a_sigma_w_by_depth_sweep(tmp_path):
    """experiment=edge_of_chaos, shrunk: its report draws the edge of chaos and the Jacobian per depth."""
    initlab("-m", "experiment=edge_of_chaos", *SMALL, "trainer.max_steps=6", "trainer.log_every=2",
            "trainer.jacobian_inputs=2", "init.scale=1.0,3.0", "model.depth=2,4", "hydra.sweep.dir=sweep", cwd=tmp_path)
    out = tmp_path / "sweep" / "report"
    for name in ("edge_of_chaos.png", "jacobian_depth.png", "theory_preact.png"):
        assert _looks_drawn(out / "figures" / name), name
        assert f"figures/{name}" in (out / "report.md").read_text()
    from initlab.report.figures.theory_figures import _edge_sweep

    sweep = load([tmp_path / "sweep"])
    sigma_b2, mu_b, activation = _edge_sweep(sweep)
    assert sigma_b2 == pytest.approx(0.05, rel=1e-6) and mu_b == 0.0 and activation == "tanh"
    for row in sweep.runs.itertuples():  # the columns are each run's own numbers
        summary = json.loads((tmp_path / "sweep" / row.run / "summary.json").read_text())
        assert row.chi1 == summary["theory"]["chi1"] and row.jac_sv_max == summary["jacobian"]["sv_max"]


def test_a_sweep_without_theory_keys_draws_no_theory_grid(sweep_dir):
    figures = sweep_dir / "report" / "figures"
    assert not (figures / "edge_of_chaos.png").exists() and not (figures / "jacobian_depth.png").exists()


def test_curves_say_which_runs_have_no_test_accuracy(sweep_dir, tmp_path, monkeypatch):
    # A run that diverged before its first evaluation has a loss curve and no accuracy point: the
    # curves figure says so, on the figure and on the page. (Only that figure is drawn: ~2 s less.)
    draw_only(monkeypatch, "curves")
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_dir, sweep, ignore=shutil.ignore_patterns("report"))
    diverged = run(make_config(*SMALL, "init=normal", "init.std=10", "lr.value=100", "trainer.batch_size=50",
                               "trainer.max_steps=12", "trainer.log_every=2"), output_dir=sweep / "9")  # one epoch
    assert diverged.status == "diverged"
    page = (write_report([sweep]).out / "report.md").read_text()
    assert "accuracy panels without the 1 run that diverged before its first evaluation" in page
    assert "diverged before" not in (sweep_dir / "report" / "report.md").read_text()  # (the callback's report)


def test_only_some_figures_are_drawn_when_named(sweep_dir, tmp_path):
    sweep = load([sweep_dir])
    palette, widths = init_palette(sweep), page_module.width.analyse(sweep)
    drawn = page_module.catalogue.all_figures(sweep, palette, tmp_path, widths, only=("curves", "accuracy"))
    assert list(drawn) == ["Training curves", "Final accuracy"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["accuracy_heatmap.png", "curves.png"]
    with pytest.raises(ValueError, match=r"no figure named \['curve'\]: the figures are \['curves', "):
        page_module.catalogue.all_figures(sweep, palette, tmp_path, widths, only=("curve",))


def _section(page: str, heading: str) -> str:
    return page.split(f"### {heading}\n", 1)[1].split("###", 1)[0]


def test_figures_say_where_values_are_not_finite(sweep_dir, tmp_path, monkeypatch):
    # A diverged run's overflowed norms and NaN losses have no place on a log axis: each figure that
    # leaves them out says so, counted independently here from the tables as edited.
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_dir, sweep, ignore=shutil.ignore_patterns("report"))
    one = sorted(p.parent for p in sweep.glob("*/summary.json"))[0]
    layers = pd.read_parquet(one / "layers.parquet")
    last = layers[layers.metric == "weight_grad_norm"].step.max()
    norms = (layers.metric == "weight_grad_norm") & (layers.step == last)
    assert norms.sum() == layers.layer.nunique()
    layers.loc[norms, "value"] = np.inf
    first_preact = (layers.metric == "preact_std") & (layers.step == layers.step.min()) & (layers.layer == 1)
    assert first_preact.sum() == 1
    layers.loc[first_preact, "value"] = np.nan
    layers.to_parquet(one / "layers.parquet")
    curves = pd.read_parquet(one / "curves.parquet")
    curves.loc[curves.index[(curves.metric == "train_loss").to_numpy()][3], "value"] = np.nan
    curves.to_parquet(one / "curves.parquet")
    page = (write_report([sweep]).out / "report.md").read_text()
    assert "gaps where a training loss is not finite (overflow or NaN): 1 run" in _section(page, "Training curves")
    assert ("gaps where a value is not finite (overflow or NaN): 1 run at the end"
            in _section(page, "Gradient flow (weights)"))
    assert "not finite" not in _section(page, "Gradient flow (back-propagated dL/dz)")
    assert f"{int(norms.sum())} cells in white, whose norm is not finite" in _section(page, "Gradient-norm heatmap")
    assert ("gaps where a value is not finite (overflow or NaN): 1 run"
            in _section(page, "Theory: predicted vs measured pre-activation std at init"))
    clean = (sweep_dir / "report" / "report.md").read_text()  # the same sweep unedited (the callback's report)
    assert "not finite" not in clean
    # A panel where every run's norms overflowed says so, under the step recorded.
    edited = load([sweep])
    lr = edited.runs.set_index("run").loc[one.name, "lr.value"]
    for name in edited.runs.run[edited.runs["lr.value"] == lr]:
        norms_of = (edited.layers.run == name) & (edited.layers.metric == "weight_grad_norm")
        edited.layers.loc[norms_of & (edited.layers.step == edited.layers.step[norms_of].max()), "value"] = np.inf
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path, note="": drawn.append(fig))
    plots.gradient_flow(edited, init_palette(edited), tmp_path / "flow.png")
    empty = [ax.get_title() for ax in drawn[0].axes if any(t.get_text() == "no finite values" for t in ax.texts)]
    assert len(empty) == 1 and empty[0].startswith(f"lr={lr}: end (step")
    plt.close(drawn[0])
