"""Width as an axis: the coord check's table, its slopes against a closed-form least-squares fit, and
`initlab experiment=coord_check` end to end (a small version on generated data)."""

import numpy as np
import pandas as pd
import pytest

from initlab.report import width

from conftest import run_initlab


def table(slopes_by_layer: dict, widths=(32, 128, 512), seeds=(0, 1, 2), steps=(0, 1)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [("mup", w, s, t, layer, layer == max(slopes_by_layer), 0.7 * w ** a * np.exp(rng.normal(0, 0.01)))
            for layer, a in slopes_by_layer.items() for w in widths for s in seeds for t in steps]
    return pd.DataFrame(rows, columns=["param", "width", "seed", "step", "layer", "readout", "l1"])


def test_a_slope_is_the_least_squares_fit_of_log_l1_on_log_width():
    t = table({0: 0.0, 1: 0.1, 2: 0.8})
    fitted = width.slopes(t, ["param"])
    for (layer, step), part in t.groupby(["layer", "step"]):
        means = part.groupby("width").l1.mean()
        x, y = np.log(means.index.to_numpy(float)), np.log(means.to_numpy())
        expected = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()  # closed form
        row = fitted[(fitted.layer == layer) & (fitted.step == step)].iloc[0]
        assert row.slope == pytest.approx(expected, rel=1e-9)
        assert row.width_unstable == (abs(expected) > width.WIDTH_SLOPE)
    assert list(fitted.groupby("layer").width_unstable.any()) == [False, False, True]
    assert set(fitted.widths) == {3}


def test_a_dead_layer_has_no_slope_and_is_not_flagged():
    t = table({0: 0.0, 1: 0.9})
    t.loc[(t.layer == 1) & (t.width == 512), "l1"] = 0.0  # a layer whose units all died at one width
    fitted = width.slopes(t, ["param"])
    dead = fitted[fitted.layer == 1]
    assert dead.slope.isna().all() and not dead.width_unstable.any()


@pytest.mark.slow  # ~20 s, most of it the report's ten other figures
def test_the_coord_check_experiment_end_to_end(tmp_path):
    """The named study on generated data, smaller: the tidy table, the slopes, the findings and the figure."""
    result = run_initlab(["experiment=coord_check", "data=synthetic", "model.width=32,128,512", "trainer.seed=0",
                          f"hydra.sweep.dir={tmp_path}/sweep", "hydra.launcher.write_workers=0"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = tmp_path / "sweep" / "report"
    coords = pd.read_csv(report / "coord_check.csv")
    assert {"param", "width", "step", "layer", "seed", "l1"} <= set(coords.columns)
    assert len(coords) == 3 * 3 * 5 * 3  # params x widths x steps x layers (one seed)
    assert sorted(coords.step.unique()) == [0, 1, 2, 3, 4] and sorted(coords.width.unique()) == [32, 128, 512]
    slopes = pd.read_csv(report / "coord_slopes.csv")
    mup, standard = slopes[slopes.param == "mup"], slopes[slopes.param == "standard"]
    # muP: every hidden layer flat at every step; its readout flat once a few updates outweigh its init part
    assert (mup[~mup.readout].slope.abs() < 0.1).all()
    assert (mup[mup.readout & (mup.step >= 2)].slope.abs() < 0.1).all()
    assert mup[mup.readout & (mup.step == 0)].slope.iloc[0] < -width.WIDTH_SLOPE  # ~ width^-1/2, by design
    # the standard parameterization's readout grows with width once Adam has stepped
    assert standard[standard.readout & (standard.step >= 1)].width_unstable.all()
    page = (report / "report.md").read_text()
    assert "## Width (coord check)" in page and "param=standard: layer 2 (readout) is **width_unstable** from step 1" in page
    assert "param=mup: layer 2 (readout) is **width_unstable** from step 0" in page and "at init only, by design" in page
    assert (report / "figures" / "coord_check.png").stat().st_size > 10_000


def test_the_best_rate_per_width_and_its_drift_in_octaves():
    """best_rates against a grid whose minimum is known: standard's best rate halves per doubling of width
    (drift 2 octaves over 64-256), muP's stays put (0); a diverged point is never the best."""
    rows = []
    for param, shift in (("standard", 1.0), ("mup", 0.0)):
        for i, w in enumerate((64, 128, 256)):
            best = -6 - shift * i  # log2 of the best rate
            for e in range(-10, 0):
                loss = 0.1 + 0.05 * (e - best) ** 2
                rows.append((param, w, 2.0 ** e, np.inf if (param, w, e) == ("mup", 64, -7) else loss, 1))
    table = pd.DataFrame(rows, columns=["param", "width", "lr", "train_loss", "runs"])
    best = width.best_rates(table, ["param"])
    got = {(r.param, r.width): r.best_lr for r in best.itertuples()}
    assert got == {("standard", 64): 2**-6, ("standard", 128): 2**-7, ("standard", 256): 2**-8,
                   ("mup", 64): 2**-6, ("mup", 128): 2**-6, ("mup", 256): 2**-6}
    assert set(best[best.param == "standard"].drift_octaves) == {2.0}
    assert set(best[best.param == "mup"].drift_octaves) == {0.0}


@pytest.mark.slow  # ~15 s, most of it the report
def test_the_lr_transfer_experiment_end_to_end(tmp_path):
    """The named study, small, on generated data: each width's best rate and its drift, and the figure."""
    result = run_initlab(["experiment=lr_transfer", "data=synthetic", "model.width=32,128", "optim=adam",
                          "param=standard,mup", "lr.value=0.001,0.01,0.1", "trainer.max_steps=20",
                          f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = tmp_path / "sweep" / "report"
    best = pd.read_csv(report / "lr_transfer.csv")
    assert {"param", "width", "best_lr", "train_loss", "drift_octaves"} <= set(best.columns)
    assert len(best) == 4 and set(best.best_lr) <= {0.001, 0.01, 0.1}
    runs = pd.read_csv(report / "runs.csv")
    for row in best.itertuples():  # the best rate is the lowest final training loss of its width and param
        mine = runs[(runs.param == row.param) & (runs["model.width"] == row.width)]
        assert row.best_lr == mine.loc[mine.train_loss.idxmin(), "lr.value"]
    assert "## Learning-rate transfer (width)" in (report / "report.md").read_text()
    assert (report / "figures" / "lr_transfer.png").stat().st_size > 10_000
