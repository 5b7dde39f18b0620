"""Each init scheme against its formula and against torch.nn.init, the independent oracle."""

import math

import pytest
import torch
from torch import nn

from initlab import init as schemes
from initlab.model import MLP

FAN_OUT, FAN_IN = 400, 1000


def weight():
    return torch.empty(FAN_OUT, FAN_IN)


def draw(fn, seed=0, **kwargs):
    torch.manual_seed(seed)
    w = weight()
    fn(w, **kwargs)
    return w


@pytest.mark.parametrize("fn, kwargs, expected_std", [
    (schemes.normal_, dict(mean=0.0, std=1.0), 1.0),
    (schemes.uniform_, dict(a=-0.05, b=0.05), 0.1 / math.sqrt(12)),
    (schemes.xavier_uniform_, dict(gain=1.0), math.sqrt(2 / (FAN_IN + FAN_OUT))),
    (schemes.xavier_normal_, dict(gain=5 / 3), 5 / 3 * math.sqrt(2 / (FAN_IN + FAN_OUT))),
    (schemes.kaiming_normal_, dict(a=0.0, mode="fan_in", nonlinearity="relu"), math.sqrt(2 / FAN_IN)),
    (schemes.kaiming_normal_, dict(a=0.0, mode="fan_out", nonlinearity="relu"), math.sqrt(2 / FAN_OUT)),
    (schemes.kaiming_uniform_, dict(a=0.0, mode="fan_in", nonlinearity="relu"), math.sqrt(2 / FAN_IN)),
    (schemes.kaiming_normal_, dict(a=0.2, mode="fan_in", nonlinearity="leaky_relu"),
     math.sqrt(2 / (1 + 0.2**2)) / math.sqrt(FAN_IN)),
    (schemes.lecun_normal_, dict(), 1 / math.sqrt(FAN_IN)),
    (schemes.trunc_normal_, dict(mean=0.0, std=0.02, a=-2.0, b=2.0), 0.02),
    (schemes.torch_default_, dict(), 1 / math.sqrt(3 * FAN_IN)),
    (schemes.orthogonal_, dict(gain=1.0), 1 / math.sqrt(FAN_IN)),
])
def test_empirical_std_matches_formula(fn, kwargs, expected_std):
    w = draw(fn, **kwargs)
    assert w.std().item() == pytest.approx(expected_std, rel=0.02)
    assert w.mean().item() == pytest.approx(0.0, abs=0.05 * expected_std)


@pytest.mark.parametrize("ours, theirs, kwargs", [
    (schemes.kaiming_normal_, nn.init.kaiming_normal_, dict(a=0.0, mode="fan_in", nonlinearity="relu")),
    (schemes.kaiming_normal_, nn.init.kaiming_normal_, dict(a=0.1, mode="fan_out", nonlinearity="leaky_relu")),
    (schemes.kaiming_uniform_, nn.init.kaiming_uniform_, dict(a=0.0, mode="fan_in", nonlinearity="tanh")),
    (schemes.xavier_uniform_, nn.init.xavier_uniform_, dict(gain=5 / 3)),
    (schemes.xavier_normal_, nn.init.xavier_normal_, dict(gain=1.0)),
])
def test_same_draws_as_torch(ours, theirs, kwargs):
    assert torch.equal(draw(ours, **kwargs), draw(theirs, **kwargs))


def test_torch_default_is_what_nn_linear_does():
    torch.manual_seed(3)
    reference = nn.Linear(FAN_IN, FAN_OUT).weight.detach().clone()
    assert torch.equal(draw(schemes.torch_default_, seed=3), reference)


def test_orthogonal_rows_are_orthonormal_times_gain():
    w = draw(schemes.orthogonal_, gain=2.0)
    assert torch.allclose(w @ w.T, 4.0 * torch.eye(FAN_OUT), atol=1e-4)


def test_zeros_and_constant_bias():
    model = MLP(20, 10, depth=2, width=16)
    schemes.apply_init(model, {"_target_": "initlab.init.zeros_", "bias": 0.5}, "relu")
    for layer in model.linears:
        assert torch.count_nonzero(layer.weight) == 0
        assert torch.all(layer.bias == 0.5)


def test_torch_default_bias_bound():
    model = MLP(100, 10, depth=1, width=50)
    schemes.apply_init(model, {"_target_": "initlab.init.torch_default_", "bias": "torch_default"}, "relu")
    bias = model.linears[0].bias
    assert bias.abs().max() <= 1 / math.sqrt(100) and bias.std() > 0


@pytest.mark.parametrize("activation, expected", [
    ("relu", math.sqrt(2)), ("tanh", 5 / 3), ("sigmoid", 1.0), ("identity", 1.0), ("selu", 0.75),
    ("leaky_relu", math.sqrt(2 / (1 + 0.01**2))),
])
def test_null_gain_comes_from_the_model_activation(activation, expected):
    kwargs = schemes.scheme_kwargs({"_target_": "x", "gain": None, "bias": 0.0}, activation, 0.01)
    assert kwargs == {"gain": pytest.approx(expected)}


def test_null_kaiming_settings_come_from_the_model():
    cfg = {"_target_": "x", "a": None, "mode": "fan_in", "nonlinearity": None, "bias": 0.0}
    assert schemes.scheme_kwargs(cfg, "leaky_relu", 0.2) == {"a": 0.2, "mode": "fan_in", "nonlinearity": "leaky_relu"}
    assert schemes.scheme_kwargs(cfg, "tanh", 0.2) == {"a": 0.0, "mode": "fan_in", "nonlinearity": "tanh"}


def test_gelu_gain_is_one_over_root_second_moment():
    # Independent quadrature of E[gelu(z)^2], z ~ N(0, 1).
    z = torch.linspace(-12, 12, 400_001, dtype=torch.float64)
    density = torch.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    second_moment = torch.trapezoid(torch.nn.functional.gelu(z) ** 2 * density, z).item()
    assert schemes.GELU_GAIN == pytest.approx(1 / math.sqrt(second_moment), abs=1e-4)


def test_apply_init_touches_every_layer_with_the_scheme():
    torch.manual_seed(0)
    model = MLP(784, 10, depth=3, width=300)
    schemes.apply_init(model, {"_target_": "initlab.init.kaiming_normal_", "a": None, "mode": "fan_in",
                               "nonlinearity": None, "bias": 0.0}, "relu")
    for layer in model.linears:
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / layer.in_features), rel=0.05)
        assert torch.count_nonzero(layer.bias) == 0
