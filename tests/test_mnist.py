"""Real MNIST: the founding failure and its Kaiming fix, kept to a fraction of a run each."""

import math

from initlab.train import run

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
