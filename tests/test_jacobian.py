"""Dynamical isometry (initlab/train/jacobian.py): the singular values against autograd's own Jacobian."""

import math

import pytest
import torch

from initlab.train import jacobian
from initlab.build.init import apply_init
from initlab.build.model import MLP


def _net(activation, init, depth=4, width=24, inputs=30, bias=None):
    torch.manual_seed(0)
    model = MLP(inputs, 10, depth=depth, width=width, activation=activation).double()
    apply_init(model, init, bias or {"_target_": "initlab.bias.normal_", "std": 0.1}, activation)
    return model


def _autograd_singular_values(model, x):
    """d(last hidden activation)/d(input) per input by torch.autograd.functional.jacobian, then SVD."""
    def last_hidden(v):
        taps = []
        model(v[None], taps)
        return taps[-2][1][0]  # the last hidden layer's activation
    out = []
    for v in x:
        j = torch.autograd.functional.jacobian(last_hidden, v)
        out.append(torch.linalg.svdvals(j).sort().values)
    return torch.stack(out)


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu", "selu", "leaky_relu", "sigmoid"])
def test_singular_values_match_the_autograd_jacobian(activation):
    model = _net(activation, {"_target_": "initlab.init.xavier_normal_", "gain": 1.3})
    x = torch.randn(3, 30, dtype=torch.float64)
    ours = jacobian.singular_values(model, x)
    theirs = _autograd_singular_values(model, x)
    assert ours.shape == (3, 24)
    # float64 eigenvalues of J J^T: the square roots agree to ~sqrt(eps * largest) for the tiny ones
    assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-6 * float(theirs.max()))


def test_orthogonal_linear_nets_are_perfectly_isometric_and_relu_is_not():
    # identity activation, square orthogonal layers (input = width): every singular value is exactly 1
    x = torch.randn(4, 24, dtype=torch.float64)
    linear = _net("identity", {"_target_": "initlab.init.orthogonal_", "gain": 1.0}, depth=6, inputs=24,
                  bias={"_target_": "initlab.bias.zeros_"})
    stats = jacobian.summary(linear, x)
    assert stats["sv_min"] == pytest.approx(1.0) and stats["sv_max"] == pytest.approx(1.0)
    assert stats["sv_spread"] < 1e-9 and stats["inputs"] == 4 and stats["units"] == 24
    # ReLU zeroes about half of each layer's derivatives: the spectrum spreads out however orthogonal W is
    relu = _net("relu", {"_target_": "initlab.init.orthogonal_", "gain": math.sqrt(2)}, depth=6, inputs=24)
    assert jacobian.summary(relu, x)["sv_spread"] > 0.5


def test_each_run_records_its_jacobian_spectrum(tmp_path):
    from conftest import make_config
    from initlab.store import records
    from initlab.train.runner import run

    run(make_config("data=synthetic", "trainer.max_steps=1", "model.activation=tanh", "trainer.jacobian_inputs=2"),
        output_dir=tmp_path)
    stats = records.load_run(tmp_path).summary["jacobian"]
    assert stats["inputs"] == 2 and stats["units"] == 200 and 0 <= stats["sv_min"] <= stats["sv_median"] <= stats["sv_max"]
    run(make_config("data=synthetic", "trainer.max_steps=1", "trainer.jacobian_inputs=0"), output_dir=tmp_path / "off")
    assert records.load_run(tmp_path / "off").summary["jacobian"] is None
