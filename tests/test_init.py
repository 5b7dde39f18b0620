"""Each init scheme against its formula and against torch.nn.init, the independent oracle."""

import math

import pytest
import torch
from torch import nn

from initlab.build import init as schemes
from initlab.config.check import validate
from initlab.build.data import Tensors
from initlab.build.model import MLP
from initlab.train.loop import build_model

from conftest import make_config

FAN_OUT, FAN_IN = 400, 1000
ZEROS = {"_target_": "initlab.bias.zeros_"}


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
    (schemes.kaiming_normal_, dict(), math.sqrt(2 / FAN_IN)),  # torch's defaults: leaky_relu with a=0 = ReLU
    (schemes.lecun_normal_, dict(), 1 / math.sqrt(FAN_IN)),
    (schemes.trunc_normal_, dict(mean=0.0, std=0.02, a=-2.0, b=2.0), 0.02),
    (schemes.torch_default_, dict(), 1 / math.sqrt(3 * FAN_IN)),
    (schemes.orthogonal_, dict(gain=1.0), 1 / math.sqrt(FAN_IN)),
    # Keras/Flax VarianceScaling: Var[w] = scale / n exactly, whatever the distribution.
    (schemes.variance_scaling_, dict(scale=1.76), math.sqrt(1.76 / FAN_IN)),
    (schemes.variance_scaling_, dict(scale=2.0, mode="fan_out", distribution="normal"), math.sqrt(2 / FAN_OUT)),
    (schemes.variance_scaling_, dict(scale=1.0, mode="fan_avg", distribution="uniform"),
     math.sqrt(2 / (FAN_IN + FAN_OUT))),
])
def test_empirical_std_matches_formula(fn, kwargs, expected_std):
    w = draw(fn, **kwargs)
    assert w.std().item() == pytest.approx(expected_std, rel=0.02)
    assert w.mean().item() == pytest.approx(0.0, abs=0.05 * expected_std)


def test_truncated_std_constant_is_the_std_of_a_normal_truncated_at_two():
    # Independent quadrature of Var[z | |z| <= 2] for z ~ N(0, 1).
    z = torch.linspace(-2, 2, 200_001, dtype=torch.float64)
    density = torch.exp(-z * z / 2)
    variance = (torch.trapezoid(z * z * density, z) / torch.trapezoid(density, z)).item()
    assert schemes.TRUNCATED_STD == pytest.approx(math.sqrt(variance), abs=1e-9)
    w = draw(schemes.variance_scaling_, scale=1.0)
    assert w.abs().max().item() <= 2 / schemes.TRUNCATED_STD / math.sqrt(FAN_IN) + 1e-6  # truncated at 2 sigma


# Every option with a torch counterpart: `init=X` is torch.nn.init.X_ with torch's own defaults.
TORCH_DEFAULTS = [
    ("normal", nn.init.normal_, {}),
    ("uniform", nn.init.uniform_, {}),
    ("xavier_uniform", nn.init.xavier_uniform_, {}),
    ("xavier_normal", nn.init.xavier_normal_, {}),
    ("kaiming_uniform", nn.init.kaiming_uniform_, {}),
    ("kaiming_normal", nn.init.kaiming_normal_, {}),
    ("orthogonal", nn.init.orthogonal_, {}),
    ("trunc_normal", nn.init.trunc_normal_, {}),
    ("zeros", nn.init.zeros_, {}),
    ("constant", nn.init.constant_, {"val": 0.01}),
    ("keras/random_uniform", nn.init.uniform_, {"a": -0.05, "b": 0.05}),
    ("timm/trunc_normal", nn.init.trunc_normal_, {"std": 0.02}),
]


@pytest.mark.parametrize("option, torch_fn, kwargs", TORCH_DEFAULTS, ids=[o for o, _, _ in TORCH_DEFAULTS])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_option_draws_bit_for_bit_what_torch_draws(option, torch_fn, kwargs, activation):
    settings = validate(make_config(f"init={option}", f"model.activation={activation}", "model.depth=3",
                                    "model.width=64", "trainer.seed=7"))
    data = Tensors(torch.zeros(1, 50), torch.zeros(1, dtype=torch.long), torch.zeros(1, 50),
                   torch.zeros(1, dtype=torch.long), 10)
    ours = build_model(settings, data, torch.device("cpu"))
    torch.manual_seed(7)
    theirs = MLP(50, 10, depth=3, width=64, activation=activation)  # the same construction, same RNG use
    for layer in theirs.linears:
        torch_fn(layer.weight, **kwargs)
        nn.init.zeros_(layer.bias)
    for a, b in zip(ours.linears, theirs.linears):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


@pytest.mark.parametrize("ours, theirs, kwargs", [
    (schemes.kaiming_normal_, nn.init.kaiming_normal_, dict(a=0.0, mode="fan_in", nonlinearity="relu")),
    (schemes.kaiming_normal_, nn.init.kaiming_normal_, dict(a=0.1, mode="fan_out", nonlinearity="leaky_relu")),
    (schemes.kaiming_uniform_, nn.init.kaiming_uniform_, dict(a=0.0, mode="fan_in", nonlinearity="tanh")),
    (schemes.xavier_uniform_, nn.init.xavier_uniform_, dict(gain=5 / 3)),
    (schemes.xavier_normal_, nn.init.xavier_normal_, dict(gain=1.0)),
    (schemes.orthogonal_, nn.init.orthogonal_, dict(gain=2.0)),
])
def test_same_draws_as_torch(ours, theirs, kwargs):
    assert torch.equal(draw(ours, **kwargs), draw(theirs, **kwargs))


def test_torch_default_is_what_nn_linear_does():
    torch.manual_seed(3)
    layer = nn.Linear(FAN_IN, FAN_OUT)
    model = MLP(FAN_IN, FAN_OUT, depth=0)
    torch.manual_seed(3)  # nn.Linear draws its weight, then its bias: apply_init draws in the same order
    schemes.apply_init(model, {"_target_": "initlab.init.torch_default_"}, {"_target_": "initlab.bias.torch_default_"},
                       "relu")
    assert torch.equal(model.linears[0].weight, layer.weight) and torch.equal(model.linears[0].bias, layer.bias)


def test_orthogonal_rows_are_orthonormal_times_gain():
    w = draw(schemes.orthogonal_, gain=2.0)
    assert torch.allclose(w @ w.T, 4.0 * torch.eye(FAN_OUT), atol=1e-4)


@pytest.mark.parametrize("bias_cfg, check", [
    ({"_target_": "initlab.bias.zeros_"}, lambda b, fan_in: torch.all(b == 0)),
    ({"_target_": "initlab.bias.constant_", "value": 0.5}, lambda b, fan_in: torch.all(b == 0.5)),
    ({"_target_": "initlab.bias.torch_default_"},
     lambda b, fan_in: b.abs().max() <= 1 / math.sqrt(fan_in) and b.std() > 0),
])
def test_bias_schemes(bias_cfg, check):
    model = MLP(100, 10, depth=2, width=50)
    schemes.apply_init(model, {"_target_": "initlab.init.zeros_"}, bias_cfg, "relu")
    for layer in model.linears:
        assert torch.count_nonzero(layer.weight) == 0
        assert check(layer.bias, layer.in_features)


def test_mean_field_parameterization_sets_sigma_w_and_sigma_b():
    # initlab model.activation=tanh init=variance_scaling init.scale=1.76 bias=normal bias.std=0.2236
    settings = validate(make_config("model.activation=tanh", "init=variance_scaling", "init.scale=1.76",
                                    "bias=normal", "bias.std=0.2236", "model.width=2000", "model.depth=2"))
    torch.manual_seed(0)
    model = MLP(2000, 2000, depth=2, width=2000, activation="tanh")
    schemes.apply_init(model, settings["init"], settings["bias"], "tanh")
    weights = torch.cat([(l.weight * math.sqrt(l.in_features)).flatten() for l in model.linears])
    bias = torch.cat([l.bias for l in model.linears])
    assert weights.var().item() == pytest.approx(1.76, rel=0.01)  # sigma_w^2
    assert bias.var().item() == pytest.approx(0.05, rel=0.05)  # sigma_b^2 (6,000 draws)


@pytest.mark.parametrize("activation, expected", [
    ("relu", math.sqrt(2)), ("tanh", 5 / 3), ("sigmoid", 1.0), ("identity", 1.0), ("selu", 0.75),
    ("leaky_relu", math.sqrt(2 / (1 + 0.01**2))),
])
def test_auto_gain_comes_from_the_model_activation(activation, expected):
    kwargs = schemes.resolve_auto({"_target_": "x", "gain": "auto"}, activation, 0.01)
    assert kwargs == {"gain": pytest.approx(expected)}


def test_auto_kaiming_settings_come_from_the_model():
    cfg = {"_target_": "x", "a": "auto", "mode": "fan_in", "nonlinearity": "auto"}
    assert schemes.resolve_auto(cfg, "leaky_relu", 0.2) == {"a": 0.2, "mode": "fan_in", "nonlinearity": "leaky_relu"}
    assert schemes.resolve_auto(cfg, "tanh", 0.2) == {"a": 0.0, "mode": "fan_in", "nonlinearity": "tanh"}


def test_xavier_follows_torch_not_the_activation_unless_asked():
    # Names mean what torch means: on a ReLU net init=xavier_normal has gain 1 (He et al. 2015's
    # Xavier), and only gain=auto brings the ReLU gain sqrt(2).
    plain = validate(make_config("init=xavier_normal"))["init"]
    auto = validate(make_config("init=xavier_normal", "init.gain=auto"))["init"]
    assert schemes.resolve_auto(plain, "relu", 0.01) == {"gain": 1.0}
    assert schemes.resolve_auto(auto, "relu", 0.01) == {"gain": pytest.approx(math.sqrt(2))}


def test_gelu_gain_is_one_over_root_second_moment():
    # Independent quadrature of E[gelu(z)^2], z ~ N(0, 1).
    z = torch.linspace(-12, 12, 400_001, dtype=torch.float64)
    density = torch.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    second_moment = torch.trapezoid(torch.nn.functional.gelu(z) ** 2 * density, z).item()
    assert schemes.GELU_GAIN == pytest.approx(1 / math.sqrt(second_moment), abs=1e-4)


def test_apply_init_touches_every_layer_with_the_scheme():
    torch.manual_seed(0)
    model = MLP(784, 10, depth=3, width=300)
    schemes.apply_init(model, {"_target_": "initlab.init.kaiming_normal_", "a": "auto", "mode": "fan_in",
                               "nonlinearity": "auto"}, ZEROS, "relu")
    for layer in model.linears:
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / layer.in_features), rel=0.05)
        assert torch.count_nonzero(layer.bias) == 0


def test_a_plain_function_and_one_that_returns_a_new_tensor_both_work():
    # A user's scheme may call w.normal_() without torch.no_grad() (apply_init provides it) ...
    model = MLP(20, 10, depth=1, width=8)
    schemes.apply_init(model, {"_target_": "torch.nn.init.ones_"}, ZEROS, "relu")
    assert all(torch.all(layer.weight == 1) for layer in model.linears)
    # ... or return a fresh tensor of the weight's shape, which is copied in.
    import types
    import sys
    module = types.ModuleType("user_scheme_for_test")
    module.eye_like = lambda w, scale: scale * torch.eye(*w.shape)
    sys.modules["user_scheme_for_test"] = module
    schemes.apply_init(model, {"_target_": "user_scheme_for_test.eye_like", "scale": 3.0}, ZEROS, "relu")
    assert torch.equal(model.linears[0].weight, 3.0 * torch.eye(8, 20))
    assert model.linears[0].weight.requires_grad


def test_symmetric_layers():
    model = MLP(20, 10, depth=2, width=8)
    schemes.apply_init(model, {"_target_": "initlab.init.constant_", "val": 0.3}, ZEROS, "relu")
    weights, bias_list = [l.weight for l in model.linears], [l.bias for l in model.linears]
    assert schemes.symmetric_layers(weights, bias_list) == [0, 1]
    schemes.apply_init(model, {"_target_": "initlab.init.kaiming_normal_"}, ZEROS, "relu")
    assert schemes.symmetric_layers([l.weight for l in model.linears], bias_list) == []
    with torch.no_grad():
        model.linears[2].weight[:, 3] += 1  # one unit of layer 1 differs in what it feeds forward
        weights = [torch.full_like(w, 0.3) for w in weights[:2]] + [model.linears[2].weight]
    assert schemes.symmetric_layers(weights, bias_list) == [0]



def test_lsuv_gives_each_layer_unit_output_variance_on_its_batch_and_starts_orthonormal():
    from conftest import make_config
    from initlab.build import data as datasets
    from initlab.config.check import validate
    from initlab.train.loop import build_model

    settings = validate(make_config("init=lsuv", "model.depth=5", "model.activation=tanh", "data=synthetic"))
    data = datasets.load(settings["data"], torch.device("cpu"))
    model = build_model(settings, data, torch.device("cpu"))
    # the batch LSUV used, drawn again independently: the first batch_size of a permutation seeded by the seed
    pick = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(0))[:settings["trainer"]["batch_size"]]
    taps = []
    with torch.no_grad():
        model(data.train_x[pick], taps)
    for pre, _ in taps:
        assert abs(float(pre.var()) - 1.0) < 0.1
    # rescaling keeps each layer orthogonal: W W^T (or W^T W for a tall W) is a multiple of the identity
    for layer in model.linears:
        w = layer.weight.detach().double()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(gram, gram[0, 0] * torch.eye(len(gram), dtype=torch.float64), atol=1e-5 * float(gram[0, 0]))


def test_lsuv_stops_after_max_passes():
    from initlab.build.init import lsuv_rescale

    torch.manual_seed(0)
    model = MLP(20, 10, depth=3, width=16, activation="relu")
    x = torch.randn(64, 20)
    assert lsuv_rescale(model, x, tol=1e-12, max_passes=3) == [3, 3, 3, 3]  # no float var is within 1e-12 of 1
    passes = lsuv_rescale(model, x, tol=0.1, max_passes=10)
    assert passes == [0, 0, 0, 0]  # already within 0.1 after the first call


@pytest.mark.parametrize("activation, bias, sigma_w2", [
    ("relu", {"_target_": "initlab.bias.zeros_"}, 2.0), ("tanh", {"_target_": "initlab.bias.zeros_"}, 1.0),
    ("tanh", {"_target_": "initlab.bias.normal_", "mean": 0.0, "std": math.sqrt(0.05)}, 1.7610),
    # a positive bias mean: q* grows without bound as sigma_w^2 nears 2 / (1 + slope^2), where the mean stops
    # mattering and chi_1 reaches 1 from below; the edge is the centred one
    ("leaky_relu", {"_target_": "initlab.bias.constant_", "value": 0.1}, 2 / (1 + 0.01 ** 2)),
])
def test_critical_gain_puts_the_net_at_the_edge_of_chaos(activation, bias, sigma_w2):
    from initlab import theory
    model = MLP(300, 10, depth=3, width=300, activation=activation)
    schemes.apply_init(model, {"_target_": "initlab.init.orthogonal_", "gain": "critical"}, bias, activation, 0.01)
    w = model.linears[1].weight.detach().double()
    assert float(w.pow(2).sum(1).mean()) == pytest.approx(sigma_w2, rel=1e-3)  # square orthogonal: rows of norm gain
    mu_b, sigma_b2 = theory.bias_moments(bias)
    q = theory.fixed_point(sigma_w2, sigma_b2, activation, mu=mu_b)
    if q:
        assert theory.chi1(q, sigma_w2, activation, mu=mu_b) == pytest.approx(1.0, abs=1e-3)


def test_critical_gain_needs_a_bias_with_one_known_variance():
    from conftest import make_config
    from initlab.config.check import validate
    from initlab.config.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^init.gain=critical: needs bias=zeros, constant or normal .*torch_default"):
        validate(make_config("init=orthogonal", "init.gain=critical", "bias=torch_default"))
    with pytest.raises(ConfigError, match=r"init.gain='critic': must be a number > 0, auto or critical"):
        validate(make_config("init=orthogonal", "init.gain=critic"))


def test_lsuv_layer_by_layer_equals_running_the_whole_model_per_pass():
    import copy

    from initlab.build.init import lsuv_rescale

    class Whole(nn.Module):  # any model with the MLP's forward(x, taps), not walkable layer by layer
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, taps=None):
            return self.inner(x, taps)

    torch.manual_seed(0)
    mlp = MLP(20, 10, depth=6, width=32, activation="tanh")
    schemes.apply_init(mlp, {"_target_": "initlab.init.lsuv_"}, {"_target_": "initlab.bias.zeros_"}, "tanh")
    whole = Whole(copy.deepcopy(mlp))
    x = torch.randn(64, 20)
    assert lsuv_rescale(mlp, x) == lsuv_rescale(whole, x)
    for a, b in zip(mlp.linears, whole.inner.linears):
        assert torch.allclose(a.weight, b.weight, rtol=1e-6)
