"""Each finding fires on records built to show it and stays silent on a healthy run."""

import math

import numpy as np
import pandas as pd
import pytest

from initlab.diagnose import Context, diagnose

from conftest import make_config
from initlab.config import validate

THRESHOLDS = validate(make_config())["diagnose"]
LN10 = math.log(10)
STEPS = np.arange(0, 600)
LOG_STEPS = STEPS[::10]
N_LAYERS = 3


def tables(grad=lambda step, layer: 0.5, loss=lambda step: 2.0 * math.exp(-step / 200) + 0.1,
           extra=None, eval_dead=None):
    """Tidy layers/curves tables of a 3-layer run, from per-(step, layer) functions."""
    metrics = {"weight_grad_norm": grad, "bias_grad_norm": grad, "act_std": lambda s, l: 0.5,
               "dead_fraction": lambda s, l: 0.0, "saturated_fraction": lambda s, l: 0.0, **(extra or {})}
    rows = [(s, 1 + s // 300, l, m, float(f(s, l))) for s in LOG_STEPS for l in range(N_LAYERS)
            for m, f in metrics.items()]
    for l in range(N_LAYERS):
        rows.append((600, 2, l, "eval_dead_fraction", (eval_dead or {}).get(l, 0.0)))
    layers = pd.DataFrame(rows, columns=["step", "epoch", "layer", "metric", "value"])
    curves = pd.DataFrame({"step": STEPS, "epoch": 1 + STEPS // 300, "metric": "train_loss",
                           "value": [float(loss(s)) for s in STEPS]})
    return layers, curves


def verdict(layers, curves, **context):
    ctx = Context(num_classes=10, activation=context.pop("activation", "relu"),
                  output_activation=context.pop("output_activation", None), **context)
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
    layers, curves = tables(grad=lambda s, l: [1e-6, 1e-3, 0.5][l])
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
