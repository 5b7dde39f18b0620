"""The runner: recorded statistics against an independent computation, determinism, statuses."""

import copy
import json
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from initlab.store import records
from initlab.train import loop as training_module
from initlab.config.check import validate
from initlab.train.runner import run
from initlab.train.loop import Training

from conftest import make_config

SMALL = ("data=synthetic", "data.source.num_train=1000", "data.source.num_test=200", "model.width=64")


def small(*overrides):
    return make_config(*SMALL, *overrides)


def i_last(i, layers):
    return i == len(layers) - 1


def table(layers, metric, step):
    rows = layers[(layers.metric == metric) & (layers.step == step)].sort_values("layer")
    return torch.tensor(rows.value.to_numpy(), dtype=torch.float64)


@pytest.mark.parametrize("activation, output_activation", [("relu", None), ("tanh", "relu")])
def test_recorded_statistics_equal_an_independent_computation(tmp_path, activation, output_activation):
    """Replays two SGD steps by hand (manual forward, autograd, w -= lr*g) and compares every metric."""
    overrides = [f"model.activation={activation}", "trainer.max_steps=2", "trainer.log_every=1",
                 "trainer.batch_size=50", "lr.value=0.1", "model.depth=3"]
    if output_activation:
        overrides.append(f"model.output_activation={output_activation}")
    cfg = small(*overrides)
    settings = validate(cfg)
    # The starting weights the run will use (same seed), taken before it trains.
    twin = copy.deepcopy(Training(settings, torch.device("cpu")).model).double()
    result = run(cfg, output_dir=tmp_path)

    data = Training(settings, torch.device("cpu")).data
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(0))  # documented batch order
    act = {"relu": torch.relu, "tanh": torch.tanh}
    for step in (0, 1):
        idx = order[step * 50:(step + 1) * 50]
        h = data.train_x[idx].double()
        outputs, pres = [], []
        for i, layer in enumerate(twin.linears):
            pre = h @ layer.weight.T + layer.bias
            pre.retain_grad()
            last = i == len(twin.linears) - 1
            h = (act[output_activation] if output_activation else (lambda t: t))(pre) if last else act[activation](pre)
            pres.append(pre), outputs.append(h)
        twin.zero_grad()
        F.cross_entropy(h, data.train_y[idx]).backward()
        layers = list(twin.linears)
        expected = {
            "weight_grad_norm": [l.weight.grad.norm() for l in layers],
            "bias_grad_norm": [l.bias.grad.norm() for l in layers],
            "weight_norm": [l.weight.norm() for l in layers],
            "update_ratio": [0.1 * l.weight.grad.norm() / l.weight.norm() for l in layers],  # plain SGD
            "act_mean": [o.mean() for o in outputs],
            "act_std": [o.std() for o in outputs],
            "preact_std": [p.std() for p in pres],
            "backprop_grad_norm": [p.grad.norm() for p in pres],
            "saturated_fraction": [(o.abs() > 0.99).double().mean() if activation == "tanh" and not i_last(i, layers)
                                   else torch.zeros((), dtype=torch.float64) for i, o in enumerate(outputs)],
            "dead_fraction": [(o == 0).all(0).double().mean() for o in outputs],
        }
        for metric, values in expected.items():
            got = table(result.layers, metric, step)
            assert torch.allclose(got, torch.stack(values).detach(), rtol=2e-4, atol=1e-6), (metric, step)
        with torch.no_grad():
            for l in layers:
                l.weight -= 0.1 * l.weight.grad
                l.bias -= 0.1 * l.bias.grad


def test_layers_table_is_tidy_and_complete(tmp_path):
    result = run(small("trainer.max_steps=25", "trainer.log_every=5", "model.depth=2"), output_dir=tmp_path)
    layers = result.layers
    assert list(layers.columns) == ["step", "epoch", "layer", "metric", "value"]
    assert sorted(layers[layers.metric == "weight_grad_norm"].step.unique()) == [0, 5, 10, 15, 20]
    assert sorted(layers.layer.unique()) == [0, 1, 2]
    assert set(layers.metric) == {"weight_grad_norm", "bias_grad_norm", "backprop_grad_norm", "weight_norm",
                                  "update_ratio", "act_mean", "act_std", "preact_std", "dead_fraction",
                                  "saturated_fraction", "preact_l1", "eval_dead_fraction", "eval_saturated_fraction",
                                  "predicted_preact_std"}
    assert not layers.duplicated(["step", "layer", "metric"]).any()
    evals = layers[layers.metric.str.startswith("eval_")]
    assert sorted(evals.step.unique()) == [5, 10, 15, 20, 25]  # an evaluation pass after every epoch
    curves = result.curves
    assert list(curves.columns) == ["step", "epoch", "metric", "value"]
    assert sorted(curves[curves.metric == "train_loss"].step) == list(range(25))
    assert set(curves.metric) == {"train_loss", "lr", "epoch_train_loss", "test_loss", "test_accuracy"}


def test_a_fixed_batch_run_trains_on_its_seeds_first_batch_at_every_step(tmp_path):
    """trainer.fixed_batch: the losses of a hand loop that steps on the first batch of the seed's first order."""
    config = small("trainer.max_steps=4", "trainer.fixed_batch=true", "trainer.seed=3", "lr.value=0.1")
    result = run(config, output_dir=tmp_path)
    settings = validate(config)
    data = training_module.datasets.load(settings["data"], torch.device("cpu"))
    model = training_module.build_model(settings, data, torch.device("cpu"))
    batch = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(3))[: settings["trainer"]["batch_size"]]
    losses = []
    for _ in range(4):
        loss = F.cross_entropy(model(data.train_x[batch]), data.train_y[batch])
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
        losses.append(loss.item())
    recorded = result.curves[result.curves.metric == "train_loss"].sort_values("step").value.tolist()
    assert recorded == pytest.approx(losses, rel=1e-6)
    assert losses[-1] < losses[0]  # the same batch, learned


def test_records_on_disk_equal_the_result(tmp_path):
    result = run(small("trainer.max_steps=10", "init=xavier_uniform"), output_dir=tmp_path)
    back = records.load_run(tmp_path)
    pd.testing.assert_frame_equal(back.layers, result.layers)
    pd.testing.assert_frame_equal(back.curves, result.curves)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["schema_version"] == records.SCHEMA_VERSION
    assert summary["status"] == "completed"
    assert set(summary["metrics"]) >= {"train_loss", "test_loss", "test_accuracy"}
    assert summary["config"]["init"]["_target_"] == "initlab.init.xavier_uniform_"
    assert summary["versions"]["torch"] == torch.__version__.split("+")[0] or summary["versions"]["torch"]
    assert summary["device"] == "cpu" and summary["wall_time_s"] > 0
    final = result.curves[result.curves.metric == "test_accuracy"].value.iloc[-1]
    assert summary["metrics"]["test_accuracy"] == pytest.approx(final)
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    args = ("trainer.max_steps=30", "trainer.log_every=3")
    a = run(small(*args), output_dir=tmp_path / "a")
    b = run(small(*args), output_dir=tmp_path / "b")
    c = run(small(*args, "trainer.seed=1"), output_dir=tmp_path / "c")
    pd.testing.assert_frame_equal(a.layers, b.layers)
    pd.testing.assert_frame_equal(a.curves, b.curves)
    assert not a.layers.value.equals(c.layers.value)
    assert a.summary["config_hash"] == b.summary["config_hash"] != c.summary["config_hash"]


def test_non_finite_loss_is_recorded_as_diverged(tmp_path):
    result = run(small("init=normal", "init.std=1.0", "lr.value=1000", "trainer.epochs=3"), output_dir=tmp_path)
    assert result.status == "diverged"
    summary = json.loads((tmp_path / "summary.json").read_text())  # strict JSON: no NaN
    step = summary["diverged_at_step"]
    assert isinstance(step, int) and summary["metrics"]["test_loss"] is None
    losses = result.curves[result.curves.metric == "train_loss"].set_index("step").value
    assert not math.isfinite(losses.loc[step]) and losses.loc[:step - 1].map(math.isfinite).all()
    assert (tmp_path / "layers.parquet").exists() and len(result.layers) > 0


def test_a_crash_is_recorded_as_failed_then_raised(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("evaluation exploded")
    monkeypatch.setattr(training_module, "evaluate", broken)
    with pytest.raises(RuntimeError, match="evaluation exploded"):
        run(small("trainer.max_steps=5"), output_dir=tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"] == {"type": "RuntimeError", "message": "evaluation exploded"}
    assert "evaluation exploded" in (tmp_path / "error.txt").read_text()


def test_learning_rate_follows_the_schedule(tmp_path):
    result = run(small("lr=warmup", "lr.value=0.1", "lr.warmup_epochs=1", "trainer.epochs=2", "trainer.log_every=1"),
                 output_dir=tmp_path)
    lr = result.curves[result.curves.metric == "lr"].set_index("step").value
    assert lr.loc[0] == pytest.approx(0.1 / 5) and lr.loc[4] == pytest.approx(0.1) and lr.loc[9] == pytest.approx(0.1)


def test_synthetic_problem_is_learnable(tmp_path):
    result = run(make_config("data=synthetic", "lr.value=0.1", "trainer.epochs=3"), output_dir=tmp_path)
    assert result.status == "completed" and result.metrics["test_accuracy"] > 0.5
