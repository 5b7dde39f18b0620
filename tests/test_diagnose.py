"""Each finding fires on records built to show it and stays silent on a healthy run."""

import math

import numpy as np
import pandas as pd
import pytest

from initlab.diagnosis.diagnose import diagnose
from initlab.diagnosis.evidence import Context, Evidence

from conftest import make_config
from initlab.config.check import validate

THRESHOLDS = validate(make_config())["diagnose"]
LN10 = math.log(10)
STEPS = np.arange(0, 600)
LOG_STEPS = STEPS[::10]
N_LAYERS = 3


def tables(grad=lambda step, layer: 0.5, loss=lambda step: 2.0 * math.exp(-step / 200) + 0.1,
           extra=None, eval_dead=None, accuracy=0.9, lr=0.01):
    """Tidy layers/curves tables of a 3-layer run, from per-(step, layer) functions."""
    metrics = {"weight_grad_norm": grad, "bias_grad_norm": grad, "act_std": lambda s, l: 0.5,
               "dead_fraction": lambda s, l: 0.0, "saturated_fraction": lambda s, l: 0.0,
               "update_ratio": lambda s, l: 1e-3, **(extra or {})}
    rows = [(s, 1 + s // 300, l, m, float(f(s, l))) for s in LOG_STEPS for l in range(N_LAYERS)
            for m, f in metrics.items()]
    for l in range(N_LAYERS):
        rows.append((600, 2, l, "eval_dead_fraction", (eval_dead or {}).get(l, 0.0)))
    layers = pd.DataFrame(rows, columns=["step", "epoch", "layer", "metric", "value"])
    curves = pd.DataFrame({"step": STEPS, "epoch": 1 + STEPS // 300, "metric": "train_loss",
                           "value": [float(loss(s)) for s in STEPS]})
    ends = pd.DataFrame({"step": [600], "epoch": [2], "metric": ["test_accuracy"], "value": [accuracy]})
    rates = pd.DataFrame({"step": LOG_STEPS, "epoch": 1 + LOG_STEPS // 300, "metric": "lr", "value": lr})
    return layers, pd.concat([curves, ends, rates], ignore_index=True)


def verdict(layers, curves, **context):
    ctx = Context(num_classes=10, activation=context.pop("activation", "relu"),
                  output_activation=context.pop("output_activation", None),
                  chance_accuracy=context.pop("chance_accuracy", 0.1135), **context)
    return diagnose(layers, curves, ctx, THRESHOLDS)


def kinds(result):
    return [f["kind"] for f in result["findings"]]


def test_healthy_run_has_no_findings():
    result = verdict(*tables())
    assert result == {"label": "healthy", "findings": []}


def test_stuck_at_ln10_behind_a_dead_output_relu_is_explained():
    layers, curves = tables(grad=lambda s, l: 0.0 if s >= 100 else 1.0,
                            loss=lambda s: LN10 if s >= 100 else 5.0,
                            extra={"dead_fraction": lambda s, l: 1.0 if (s >= 100 and l == 2) else 0.0})
    result = verdict(layers, curves, output_activation="relu")
    assert result["label"] == "stuck"
    finding = result["findings"][0]
    assert finding["step"] == 100 and finding["values"]["loss"] == pytest.approx(LN10)
    assert "ln 10" in finding["message"] and "output ReLU" in finding["message"]


def test_stuck_anywhere_without_an_output_relu():
    layers, curves = tables(grad=lambda s, l: 0.0 if s >= 200 else 1.0, loss=lambda s: 1.7 if s >= 200 else 3.0)
    result = verdict(layers, curves)
    assert result["label"] == "stuck" and result["findings"][0]["step"] == 200
    assert "output ReLU" not in result["findings"][0]["message"]


def test_flat_loss_with_moving_gradients_is_not_stuck():
    assert "stuck" not in kinds(verdict(*tables(loss=lambda s: 1.0)))


def test_vanishing_towards_the_input():
    layers, curves = tables(grad=lambda s, l: [1e-6, 0.1, 0.5][l])
    result = verdict(layers, curves)
    assert result["label"] == "vanishing"
    assert result["findings"][0]["layers"] == [0] and result["findings"][0]["values"]["first_to_last_ratio"] == pytest.approx(2e-6)


def test_vanishing_everywhere_while_the_loss_is_high():
    layers, curves = tables(grad=lambda s, l: 1e-7, loss=lambda s: LN10 - 1e-3 * s / 600,
                            extra={"act_std": lambda s, l: [1e-2, 1e-4, 1e-6][l]})
    result = verdict(layers, curves)
    assert result["label"] == "vanishing" and "every layer" in result["findings"][0]["message"]


def test_exploding_growth_and_overflow():
    grows = verdict(*tables(grad=lambda s, l: 0.5 * 10 ** (s / 100)))
    assert grows["label"] == "exploding"
    overflow = verdict(*tables(grad=lambda s, l: math.inf if s >= 300 and l == 0 else 1.0))
    assert overflow["label"] == "exploding" and overflow["findings"][0]["step"] == 300


def test_recovering_from_tiny_gradients_is_not_exploding():
    result = verdict(*tables(grad=lambda s, l: 1e-9 if s == 0 else 0.3))
    assert "exploding" not in kinds(result)


def test_dead_hidden_units_and_dead_output_classes():
    layers, curves = tables(eval_dead={1: 0.8})
    result = verdict(layers, curves)
    assert result["label"] == "dead_units" and result["findings"][0]["layers"] == [1]
    result = verdict(*tables(), output_activation="relu", dead_outputs=[3])
    assert result["label"] == "dead_units"
    assert result["findings"][0]["values"]["dead_classes"] == [3] and "[3]" in result["findings"][0]["message"]


def test_saturation():
    layers, curves = tables(extra={"saturated_fraction": lambda s, l: 0.9 if l == 1 else 0.0})
    result = verdict(layers, curves, activation="tanh")
    assert result["label"] == "saturation" and result["findings"][0]["layers"] == [1]


def test_diverged_comes_first():
    result = verdict(*tables(), status="diverged", diverged_at_step=123)
    assert result["label"] == "diverged" and result["findings"][0]["step"] == 123


def test_a_diverged_run_says_where_it_stopped():
    # The loss is checked at log steps: non-finite from step 11, the run goes on to the check at 20.
    layers, curves = tables()
    curves = curves[curves.step <= 20]
    found = verdict(layers[layers.step <= 20], curves, status="diverged", diverged_at_step=11)["findings"][0]
    assert found["message"] == ("The training loss became non-finite at step 11; the run stopped at step 20, "
                                "the next check of the loss (every trainer.log_every steps).")
    assert found["values"]["last_step"] == 20
    # Where the check found it on the step itself, the run stopped there.
    at_check = verdict(layers[layers.step <= 20], curves, status="diverged", diverged_at_step=20)["findings"][0]
    assert at_check["message"].endswith("at step 20; the run stopped there.")


def test_stuck_at_the_end_of_a_short_run_whatever_the_window():
    # The founding net for one epoch: the last 70 steps at ln 10 with every gradient exactly 0,
    # shorter than diagnose.window; an absorbing state all the same.
    layers, curves = tables(grad=lambda s, l: 0.0 if s >= 530 else 1.0, loss=lambda s: LN10 if s >= 530 else 5.0,
                            accuracy=0.098)
    result = verdict(layers, curves, **{"output_activation": None})
    assert result["label"] == "stuck" and result["findings"][0]["step"] == 530
    # One log step of zero gradients at the very end is not enough ...
    layers, curves = tables(grad=lambda s, l: 0.0 if s >= 590 else 1.0, loss=lambda s: LN10 if s >= 590 else 5.0)
    assert "stuck" not in kinds(verdict(layers, curves))
    # ... nor are zero gradients with a loss that still moves.
    layers, curves = tables(grad=lambda s, l: 0.0 if s >= 530 else 1.0)
    assert "stuck" not in kinds(verdict(layers, curves))


def test_a_symmetric_init_is_named():
    result = verdict(*tables(accuracy=0.1135), symmetric_layers=[0, 1])
    assert result["label"] == "symmetric" and result["findings"][0]["layers"] == [0, 1]
    assert "identical" in result["findings"][0]["message"]


def test_an_init_too_large_by_its_first_loss_or_its_first_gradients():
    by_loss = verdict(*tables(loss=lambda s: 500.0 * math.exp(-s / 50) + 0.3))
    assert by_loss["label"] == "init_too_large" and by_loss["findings"][0]["values"]["first_loss"] == pytest.approx(500.3)
    by_grad = verdict(*tables(grad=lambda s, l: 300.0 if s == 0 else 0.5))
    assert by_grad["label"] == "init_too_large"
    # A first loss at 2.9x ln C (a Kaiming output layer can start there) is not too large.
    assert "init_too_large" not in kinds(verdict(*tables(loss=lambda s: 2.9 * LN10 * math.exp(-s / 100) + 0.1)))


def test_a_layer_born_dead_with_no_weight_gradient_is_stuck_never_vanishing():
    # Issue 36's founding net with bias -3: hidden layer 1 outputs 0 for every sample from step 0, every weight
    # gradient is exactly 0, the output bias learns the class prior (the loss drifts past flat_tol), the signal
    # "shrinks" to exactly 0 -- a dead layer, not a vanishing signal.
    layers, curves = tables(grad=lambda s, l: 0.0, loss=lambda s: LN10 - 2e-3 * s / 600, accuracy=0.1135,
                            extra={"dead_fraction": lambda s, l: [0.24, 1.0, 0.0][l],
                                   "act_std": lambda s, l: [0.096, 0.0, 0.0][l],
                                   "bias_grad_norm": lambda s, l: 0.05 if l == 2 else 0.0})
    result = verdict(layers, curves, theory={"applies": True, "bias_mean": [-3.0, -3.0, -3.0]})
    assert result["label"] == "stuck" and "vanishing" not in kinds(result)
    finding = result["findings"][0]
    assert finding["values"]["dead_layers"] == [1] and "hidden layer 1 is 100% dead" in finding["message"]
    assert "mean is -3" in finding["message"] and "class prior" in finding["message"]
    assert kinds(result).count("dead_units") == 1


def test_a_layer_born_dead_while_other_weights_learn_is_dead_units():
    layers, curves = tables(grad=lambda s, l: 0.0 if l == 0 else 0.3, accuracy=0.4,
                            extra={"dead_fraction": lambda s, l: 1.0 if l == 0 else 0.0,
                                   "act_std": lambda s, l: [0.0, 0.5, 0.5][l]})
    result = verdict(layers, curves)
    assert result["label"] == "dead_units" and result["findings"][0]["layers"] == [0]
    assert "vanishing" not in kinds(result) and "from the first step" in result["findings"][0]["message"]
    # a layer that dies later in training is not born dead: the end-of-run dead_units rule speaks for it
    later = verdict(*tables(extra={"dead_fraction": lambda s, l: 1.0 if (l == 0 and s >= 300) else 0.0}))
    assert later["label"] == "healthy"


def test_an_init_too_small_by_its_logits_and_its_first_gradients():
    small = {"preact_std": lambda s, l: [0.27, 0.028, 0.003][l]}
    layers, curves = tables(grad=lambda s, l: 0.03, loss=lambda s: LN10 - 0.3 * s / 600, extra=small, accuracy=0.6)
    result = verdict(layers, curves)
    assert result["label"] == "init_too_small"
    assert result["findings"][0]["values"]["logit_std"] == pytest.approx(0.003)
    assert "0.27 -> 0.028 -> 0.003" in result["findings"][0]["message"]
    # either alone is not enough: small logits with ordinary gradients, or small gradients with spread logits
    assert "init_too_small" not in kinds(verdict(*tables(grad=lambda s, l: 0.5, extra=small)))
    assert "init_too_small" not in kinds(verdict(*tables(grad=lambda s, l: 0.03,
                                                         extra={"preact_std": lambda s, l: [1.4, 1.4, 0.5][l]})))
    # and exactly 0 is a dead net's, not a small one's
    dead = {"preact_std": lambda s, l: [0.3, 0.0, 0.0][l]}
    assert "init_too_small" not in kinds(verdict(*tables(grad=lambda s, l: 0.0 if l else 1e-3, extra=dead)))


def test_gradients_born_huge_are_init_too_large_not_exploding():
    # U(0, 1) weights: the first gradient norms are ~1e4 and only fall: the init, not an explosion
    result = verdict(*tables(grad=lambda s, l: 2.5e4 if s == 0 else 10.0, loss=lambda s: 2e4 if s == 0 else 2.3))
    assert result["label"] == "init_too_large" and "exploding" not in kinds(result)


def test_updates_too_small_point_at_the_learning_rate():
    layers, curves = tables(loss=lambda s: 2.4 - 1e-4 * s, extra={"update_ratio": lambda s, l: 3e-7}, accuracy=0.3,
                            lr=1e-5)
    result = verdict(layers, curves)
    assert result["label"] == "updates_too_small"
    assert "learning rate (1e-05)" in result["findings"][0]["message"]
    # The same tiny updates with a vanishing signal are the signal's fault.
    layers, curves = tables(loss=lambda s: 2.4 - 1e-4 * s, accuracy=0.3,
                            extra={"update_ratio": lambda s, l: 3e-7, "act_std": lambda s, l: [1.0, 1e-3, 1e-3][l]})
    assert "updates_too_small" not in kinds(verdict(layers, curves))


def test_a_run_that_did_not_learn_is_never_healthy():
    near_chance = verdict(*tables(accuracy=0.12))
    assert near_chance["label"] == "not_learning" and "near chance" in near_chance["findings"][0]["message"]
    flat = verdict(*tables(loss=lambda s: 2.30 - 1e-5 * s, accuracy=0.4))
    assert flat["label"] == "not_learning" and "fell only" in flat["findings"][0]["message"]
    # The message names the likeliest mechanism the records show.
    zero = verdict(*tables(grad=lambda s, l: 0.0 if s >= 100 else 1.0, loss=lambda s: 2.3 - 1e-6 * s, accuracy=0.1))
    assert "zero gradients" in next(f for f in zero["findings"] if f["kind"] == "not_learning")["message"]
    # "Near chance" is the run's own chance level: 52 % is chance where one class holds half the test set.
    assert verdict(*tables(accuracy=0.52), chance_accuracy=0.5)["label"] == "not_learning"
    assert verdict(*tables(accuracy=0.52))["label"] == "healthy"


def test_a_diverged_run_is_not_called_not_learning():
    assert "not_learning" not in kinds(verdict(*tables(accuracy=float("nan")), status="diverged",
                                               diverged_at_step=5))


def test_wide_views_equal_pandas_reshape():
    # Evidence.wide builds step x layer with numpy; pandas' unstack of the whole table is the reference.
    # Metrics with their own steps and layers: eval_dead_fraction has one step, `hidden` lacks the last layer.
    layers, curves = tables(extra={"hidden": lambda s, l: np.nan if l == N_LAYERS - 1 else s * 10 + l})
    layers = layers[~((layers.metric == "hidden") & (layers.layer == N_LAYERS - 1))].sample(frac=1, random_state=0)
    ev = Evidence(layers, curves, Context(num_classes=10, activation="relu", output_activation=None))
    reference = layers.set_index(["metric", "step", "layer"]).value.unstack("layer").sort_index()
    for metric in layers.metric.unique():
        pd.testing.assert_frame_equal(ev.wide(metric), reference.loc[metric], check_names=True)
    assert ev.wide("not_recorded").empty
    empty = Evidence(layers.iloc[:0], curves, Context(num_classes=10, activation="relu", output_activation=None))
    assert empty.wide("act_std").empty
