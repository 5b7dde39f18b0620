"""Real MNIST: the founding failure and its Kaiming fix, kept to a fraction of a run each."""

import math

from initlab.train.runner import run

from conftest import make_config

LN10 = math.log(10)
FOUNDING_FAILURE = ("init=normal", "init.std=1.0", "model.output_activation=relu")


def test_founding_failure_sits_at_ln10_with_zero_gradients(tmp_path):
    result = run(make_config(*FOUNDING_FAILURE, "trainer.max_steps=400", "trainer.log_every=1"), output_dir=tmp_path)
    losses = result.curves[result.curves.metric == "train_loss"].set_index("step").value
    grads = result.layers[result.layers.metric.isin(["weight_grad_norm", "bias_grad_norm"])]
    # Within the first few hundred steps every logit is <= 0 for every sample: the output ReLU
    # outputs zeros, the loss is exactly ln 10 and no layer gets any gradient.
    assert (losses.loc[300:] - LN10).abs().max() < 1e-4
    assert (grads[grads.step >= 300].value == 0).all()
    assert set(grads[grads.step >= 300].layer) == {0, 1, 2}
    dead_outputs = result.layers[(result.layers.metric == "dead_fraction") & (result.layers.layer == 2)]
    assert (dead_outputs[dead_outputs.step >= 300].value == 1.0).all()
    assert abs(result.metrics["test_loss"] - LN10) < 1e-4
    assert abs(result.metrics["test_accuracy"] - 0.1) < 0.02  # chance


def test_default_kaiming_config_learns_within_one_epoch(tmp_path):
    result = run(make_config("trainer.epochs=1"), output_dir=tmp_path)
    assert result.status == "completed"
    assert result.metrics["train_loss"] < 1.0 and result.metrics["test_loss"] < 1.0
    assert result.metrics["test_accuracy"] > 0.8


def test_stuck_loss_study_is_diagnosed_stuck_naming_the_output_relu(tmp_path):
    result = run(make_config("experiment=stuck_loss", "trainer.max_steps=400"), output_dir=tmp_path)
    diagnosis = result.summary["diagnosis"]
    assert diagnosis["label"] == "stuck"
    stuck = diagnosis["findings"][0]
    assert abs(stuck["values"]["loss"] - LN10) < 1e-4 and stuck["values"]["max_grad_norm"] == 0.0
    assert "output ReLU" in stuck["message"]
    grads = result.layers[result.layers.metric.isin(["weight_grad_norm", "bias_grad_norm"])]
    assert (grads[grads.step >= stuck["step"]].value == 0).all()


def test_stuck_loss_kaiming_study_is_not_stuck(tmp_path):
    result = run(make_config("experiment=stuck_loss_kaiming", "trainer.max_steps=400"), output_dir=tmp_path)
    assert result.summary["diagnosis"]["label"] != "stuck"
    assert result.metrics["test_accuracy"] > 0.5


def test_early_stop_on_stuck_says_why(tmp_path):
    result = run(make_config("experiment=stuck_loss", "trainer.stop_on=[stuck]"), output_dir=tmp_path)
    stopped = result.summary["stopped_early"]
    assert stopped["reason"] == "stuck" and stopped["step"] < 1000 and result.metrics["steps"] == stopped["step"]


def test_deep_small_normal_relu_net_vanishes_and_its_kaiming_twin_does_not(tmp_path):
    deep = ("model.depth=10", "trainer.max_steps=200")
    small = run(make_config("init=he2015/small_normal", *deep), output_dir=tmp_path / "small")
    assert small.summary["diagnosis"]["label"] == "vanishing"
    kaiming = run(make_config("init=kaiming_normal", *deep), output_dir=tmp_path / "kaiming")
    assert "vanishing" not in [f["kind"] for f in kaiming.summary["diagnosis"]["findings"]]
    assert kaiming.summary["diagnosis"]["label"] == "healthy"
