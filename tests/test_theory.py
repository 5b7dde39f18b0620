"""Mean-field theory (initlab/theory.py) against closed forms, Monte Carlo and the papers' numbers."""

import math

import numpy as np
import pytest

from initlab import theory


def _torch_phi(activation: str, negative_slope: float = 0.01):
    """phi and phi' of the activation's own torch module (build/model.activation_module), on numpy arrays:
    the Monte Carlo side of a test computed apart from theory.py's numpy functions (gelu's erf there is
    math.erf element by element: right for a few hundred quadrature nodes, seconds for 2,000,000 samples)."""
    import torch

    from initlab.build.model import activation_module

    module = activation_module(activation, negative_slope)

    def phi(u):
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(u, dtype=np.float64))).numpy()

    def dphi(u):
        x = torch.from_numpy(np.array(u, dtype=np.float64)).requires_grad_()
        slope, = torch.autograd.grad(module(x).sum(), x)
        return slope.numpy()
    return phi, dphi


def test_quadrature_reproduces_the_relu_and_identity_closed_forms():
    for q in (0.1, 1.0, 7.3):
        # leaky_relu with slope 0 is ReLU through the generic quadrature path
        assert theory.length_map(q, 2.0, 0.1, "leaky_relu", negative_slope=0.0) == pytest.approx(q + 0.1, rel=1e-9)
        assert theory.length_map(q, 2.0, 0.1, "relu") == pytest.approx(q + 0.1)
        assert theory.chi1(q, 2.0, "leaky_relu", negative_slope=0.0) == pytest.approx(1.0, rel=1e-9)
        assert theory.length_map(q, 1.5, 0.2, "identity") == pytest.approx(1.5 * q + 0.2, rel=1e-12)
        assert theory.chi1(q, 1.5, "identity") == pytest.approx(1.5, rel=1e-12)
    # ReLU's fixed point is sigma_b^2 / (1 - sigma_w^2 / 2) below sigma_w^2 = 2, none above
    assert theory.fixed_point(1.5, 0.1, "relu") == pytest.approx(0.1 / (1 - 0.75), rel=1e-6)
    assert theory.fixed_point(2.5, 0.1, "relu") is None


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "gelu", "selu", "leaky_relu"])
def test_quadrature_matches_monte_carlo(activation):
    phi, dphi = theory._phi(activation)
    mc_phi, mc_dphi = _torch_phi(activation)
    z = np.random.default_rng(0).standard_normal(2_000_000)
    for q in (0.5, 2.0):
        u = math.sqrt(q) * z
        assert theory.gaussian_mean(lambda x: phi(x) ** 2, q) == pytest.approx(np.mean(mc_phi(u) ** 2), rel=5e-3)
        assert theory.gaussian_mean(lambda x: dphi(x) ** 2, q) == pytest.approx(np.mean(mc_dphi(u) ** 2), rel=5e-3)


def test_the_edge_of_chaos_for_tanh_is_where_schoenholz_et_al_put_it():
    # Schoenholz et al. 2017 (and Poole et al. 2016): tanh with sigma_b^2 = 0.05 is critical at sigma_w^2 = 1.76
    critical = theory.critical_sigma_w2(0.05, "tanh")
    assert critical == pytest.approx(1.76, abs=0.01)
    chi = theory.chi1(theory.fixed_point(critical, 0.05, "tanh"), critical, "tanh")
    xi = theory.depth_scale(chi)  # infinite (None) at the edge, or very deep next to it
    assert chi == pytest.approx(1.0, abs=1e-6) and (xi is None or abs(xi) > 1e4)
    ordered = theory.chi1(theory.fixed_point(1.2, 0.05, "tanh"), 1.2, "tanh")
    chaotic = theory.chi1(theory.fixed_point(3.0, 0.05, "tanh"), 3.0, "tanh")
    assert ordered < 1 < chaotic and theory.depth_scale(ordered) > 0 > theory.depth_scale(chaotic)


def test_predicted_preactivation_second_moments_match_a_wide_random_net():
    rng = np.random.default_rng(1)
    width, depth, sigma_w2, sigma_b2 = 2000, 6, 1.5, 0.05
    x = rng.standard_normal((64, 784)) * 0.8  # q0 = 0.64
    q0 = float(np.mean(x ** 2))
    fans = [784] + [width] * depth
    predicted = theory.predicted_preact_q(q0, [sigma_w2] * depth, [sigma_b2] * depth, ["tanh"] * depth)
    h = x
    for l in range(depth):
        w = rng.standard_normal((fans[l], width)) * math.sqrt(sigma_w2 / fans[l])
        b = rng.standard_normal(width) * math.sqrt(sigma_b2)
        pre = (h if l == 0 else np.tanh(h)) @ w + b
        assert np.mean(pre ** 2) == pytest.approx(predicted[l], rel=0.05), l
        h = pre


@pytest.mark.parametrize("overrides", [["init=kaiming_normal"], ["model.activation=tanh", "init=xavier_normal",
                                                                   "bias=normal", "bias.std=0.2", "model.depth=4"]])
def test_each_run_records_the_prediction_beside_the_measured_preactivation_std(tmp_path, overrides):
    from conftest import make_config
    from initlab.store import records
    from initlab.train.runner import run

    run(make_config("data=synthetic", "trainer.max_steps=2", "model.width=512", *overrides), output_dir=tmp_path)
    record = records.load_run(tmp_path)
    predicted = record.summary["theory"]
    at_init = record.layers[record.layers.step == 0].pivot(index="layer", columns="metric", values="value")
    assert list(at_init["predicted_preact_std"]) == pytest.approx(predicted["predicted_preact_std"])
    # a 512-wide net at init is close to its mean-field limit: within 5 % on every hidden layer; the
    # 10 output units are not a wide layer (a Gaussian across 10 units is a rough picture): 15 %
    measured, expected = list(at_init["preact_std"]), list(at_init["predicted_preact_std"])
    assert measured[:-1] == pytest.approx(expected[:-1], rel=0.05)
    assert measured[-1] == pytest.approx(expected[-1], rel=0.15)
    fed = float(np.median(predicted["sigma_w2"][1:-1]))  # the hidden-to-hidden layers
    if "model.activation=tanh" not in overrides:  # ReLU: chi_1 = sigma_w^2 / 2, ~1 for Kaiming
        assert predicted["chi1"] == pytest.approx(fed / 2) and predicted["chi1"] == pytest.approx(1.0, abs=0.03)
    else:
        q_star = predicted["q_star"]
        assert q_star == pytest.approx(theory.length_map(q_star, fed, float(np.median(predicted["sigma_b2"][1:-1])),
                                                         "tanh", mu=float(np.median(predicted["bias_mean"][1:-1]))),
                                       rel=1e-6)


@pytest.mark.parametrize("activation", ["tanh", "gelu", "selu", "leaky_relu"])
def test_the_two_input_quadrature_matches_monte_carlo(activation):
    phi, dphi = theory._phi(activation)
    mc_phi, mc_dphi = _torch_phi(activation)
    z1, z2 = np.random.default_rng(2).standard_normal((2, 2_000_000))
    for q, c in ((0.7, 0.3), (2.0, 0.9), (1.0, -0.5)):
        u1, u2 = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
        assert theory._pair_mean(phi, phi, q, c) == pytest.approx(np.mean(mc_phi(u1) * mc_phi(u2)), rel=1e-2, abs=1e-3)
        assert theory._pair_mean(dphi, dphi, q, c) == pytest.approx(np.mean(mc_dphi(u1) * mc_dphi(u2)), rel=1e-2,
                                                                   abs=1e-3)


def test_the_relu_correlation_map_is_the_arc_cosine_kernel():
    # the closed form against the generic quadrature (leaky ReLU with slope 0)
    for c in (-0.6, 0.0, 0.5, 0.95):
        closed = theory.correlation_map(c, 0.8, 1.7, 0.1, "relu")
        assert theory.correlation_map(c, 0.8, 1.7, 0.1, "leaky_relu", negative_slope=0.0) == pytest.approx(closed, rel=2e-3)
        assert theory.chi_c(c, 0.8, 1.7, "relu") == pytest.approx(
            theory.chi_c(c, 0.8, 1.7, "leaky_relu", negative_slope=0.0), rel=2e-3)
    # c = 1 is always fixed (q* is the length map's fixed point) and its slope is chi_1
    q = theory.fixed_point(1.5, 0.05, "tanh")
    assert theory.correlation_map(1.0, q, 1.5, 0.05, "tanh") == pytest.approx(1.0, rel=1e-6)
    assert theory.chi_c(1.0, q, 1.5, "tanh") == pytest.approx(theory.chi1(q, 1.5, "tanh"), rel=1e-6)


def test_the_correlation_depth_scale_diverges_at_the_edge_of_chaos_from_both_sides():
    # Schoenholz et al. 2017, Fig. 1: xi_c peaks at sigma_w^2 = 1.76 (tanh, sigma_b^2 = 0.05)
    xs = [1.2, 1.5, 1.7, 1.74, 1.78, 1.85, 2.2, 3.0]
    xi = [theory.correlation_depth_scale(s, 0.05, "tanh") for s in xs]
    assert xi[:4] == sorted(xi[:4]) and xi[4:] == sorted(xi[4:], reverse=True)
    assert min(xi[3], xi[4]) > 50 > max(xi[0], xi[-1])
    # ordered side: c* = 1 and xi_c is the gradient's depth scale -1/ln chi_1
    q = theory.fixed_point(1.5, 0.05, "tanh")
    assert theory.correlation_fixed_point(q, 1.5, 0.05, "tanh") == 1.0
    assert xi[1] == pytest.approx(theory.depth_scale(theory.chi1(q, 1.5, "tanh")), rel=1e-9)
    # chaotic side: c* < 1 is a fixed point of the correlation map, and it attracts (chi_c < 1)
    q = theory.fixed_point(3.0, 0.05, "tanh")
    c = theory.correlation_fixed_point(q, 3.0, 0.05, "tanh")
    assert 0 < c < 1 and theory.correlation_map(c, q, 3.0, 0.05, "tanh") == pytest.approx(c, abs=1e-9)
    assert theory.chi_c(c, q, 3.0, "tanh") < 1 < theory.chi1(q, 3.0, "tanh")


@pytest.mark.parametrize("overrides, cited", [
    # tanh, sigma_w^2 = 1, sigma_b = 0.5: ordered phase, the backward signal dies over 30 layers
    (["model.depth=30", "init.scale=1.0", "bias=normal", "bias.std=0.5"], "Gradients vanish towards the input"),
    # tanh, sigma_w^2 = 0.5, no bias: the forward signal dies too (q* = 0)
    (["model.depth=20", "init.scale=0.5"], "The signal vanishes"),
])
def test_the_diagnosis_cites_the_theory_that_explains_a_vanishing_run(tmp_path, overrides, cited):
    from conftest import make_config
    from initlab.store import records
    from initlab.train.runner import run

    run(make_config("model.activation=tanh", "init=variance_scaling", "init.distribution=normal",
                    "trainer.max_steps=60", *overrides), output_dir=tmp_path)
    summary = records.load_run(tmp_path).summary
    t, finding = summary["theory"], summary["diagnosis"]["findings"][0]
    assert summary["diagnosis"]["label"] == "vanishing" and finding["message"].startswith(cited)
    assert "Mean-field theory predicts it" in finding["message"]
    depth = len(t["predicted_preact_std"]) - 1
    if "bias=normal" in overrides:
        # the numbers cited are the run's own theory: chi_1, and chi_1^depth for the squared norm
        assert finding["values"]["chi1"] == t["chi1"] < 1
        assert finding["values"]["predicted_grad_sq_factor"] == pytest.approx(t["chi1"] ** depth)
        assert f"chi_1 = {t['chi1']:.2f}" in finding["message"] and f"{t['chi1'] ** depth:.1e}" in finding["message"]
        # ...and they say the right thing: measured layer-0 / output norm ratio within 10x of sqrt(chi_1^depth)
        measured = finding["values"]["first_to_last_ratio"]
        assert 0.1 < measured / math.sqrt(t["chi1"] ** depth) < 10
    else:
        ratio = t["predicted_preact_std"][-2] / t["predicted_preact_std"][0]
        assert f"({ratio:.3g}x)" in finding["message"]
        assert 0.1 < finding["values"]["signal_ratio"] / ratio < 10  # the measured shrink, as predicted


def test_the_diagnosis_says_when_theory_does_not_explain_a_finding():
    from initlab.diagnosis.evidence import Context, Evidence
    from initlab.diagnosis.gradients import _gradient_theory
    from initlab.store.records import curves_frame, layers_frame

    layers = layers_frame([(0, 1, l, "weight_grad_norm", 1.0) for l in range(4)])
    ev = Evidence(layers, curves_frame([]), Context(num_classes=10, activation="relu", output_activation=None,
                                                    theory={"chi1": 1.0, "depth_scale": None}))
    said, values = _gradient_theory(ev, vanish=True)
    assert said.startswith(" Mean-field theory does not predict it") and values["predicted_grad_sq_factor"] == 1.0
    ev.context.theory = None
    assert _gradient_theory(ev, vanish=True) == ("", {})


# --- biases with a mean: the shifted-Gaussian maps; weights outside the theory: no prediction -----------


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu", "selu", "leaky_relu"])
def test_the_shifted_quadrature_matches_monte_carlo(activation):
    phi, dphi = theory._phi(activation)
    mc_phi, mc_dphi = _torch_phi(activation)
    z = np.random.default_rng(2).standard_normal(2_000_000)
    for q, mu in ((0.5, -0.7), (2.0, 0.4), (1.0, -1.5)):
        u = mu + math.sqrt(q) * z
        assert theory.gaussian_mean(lambda x: phi(x) ** 2, q, mu) == pytest.approx(np.mean(mc_phi(u) ** 2), rel=5e-3)
        assert theory.gaussian_mean(lambda x: dphi(x) ** 2, q, mu) == pytest.approx(np.mean(mc_dphi(u) ** 2), rel=1e-2)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_the_shifted_two_input_quadrature_matches_monte_carlo(activation):
    phi, dphi = theory._phi(activation)
    rng = np.random.default_rng(3)
    z1, z2 = rng.standard_normal((2, 2_000_000))
    for q, mu, c in ((1.0, -0.5, 0.6), (2.0, 0.3, 0.95), (0.8, -1.0, -0.3)):
        u1, u2 = mu + math.sqrt(q) * z1, mu + math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
        assert theory._pair_mean(phi, phi, q, c, mu) == pytest.approx(np.mean(phi(u1) * phi(u2)), rel=5e-3)
        assert theory._pair_mean(dphi, dphi, q, c, mu) == pytest.approx(np.mean(dphi(u1) * dphi(u2)), rel=1e-2)


@pytest.mark.parametrize("activation, mu_b, std_b", [("relu", -0.3, 0.1), ("relu", 0.5, 0.0), ("tanh", -0.4, 0.2),
                                                     ("tanh", 1.0, 0.0), ("sigmoid", -1.0, 0.3)])
def test_shifted_predictions_match_a_wide_random_net_with_a_bias_mean(activation, mu_b, std_b):
    # z^l ~ N(mu_b, q^l): the std of the pre-activations (centred, as the probes measure it) is sqrt(q^l), and
    # two inputs' pre-activations correlate as the shifted correlation map says.
    rng = np.random.default_rng(4)
    width, depth, sigma_w2 = 2000, 5, 1.6
    x = rng.standard_normal((64, 784)) * 0.8
    q0 = float(np.mean(x ** 2))
    predicted = theory.predicted_preact_q(q0, [sigma_w2] * depth, [std_b ** 2] * depth, [activation] * depth,
                                          mu_b=[mu_b] * depth)
    phi, _ = theory._phi(activation)
    fans, h = [784] + [width] * depth, x
    for l in range(depth):
        w = rng.standard_normal((fans[l], width)) * math.sqrt(sigma_w2 / fans[l])
        pre = (h if l == 0 else phi(h)) @ w + mu_b + rng.standard_normal(width) * std_b
        assert np.std(pre) == pytest.approx(math.sqrt(predicted[l]), rel=0.05), l
        assert np.mean(pre) == pytest.approx(mu_b, abs=0.1 * math.sqrt(predicted[l]))
        h = pre
    # the correlation map, one layer on from two inputs at the fixed length
    q_star = theory.fixed_point(sigma_w2, std_b ** 2, activation, mu=mu_b)
    u = rng.standard_normal((2, width))
    c = 0.5
    pair = np.stack([u[0], c * u[0] + math.sqrt(1 - c * c) * u[1]]) * math.sqrt(q_star) + mu_b
    w = rng.standard_normal((width, 4000)) * math.sqrt(sigma_w2 / width)
    nxt = phi(pair) @ w + rng.standard_normal(4000) * std_b
    measured = float(np.mean((nxt[0] - nxt[0].mean()) * (nxt[1] - nxt[1].mean())) / np.sqrt(np.var(nxt[0]) * np.var(nxt[1])))
    assert measured == pytest.approx(theory.correlation_map(c, q_star, sigma_w2, std_b ** 2, activation, mu=mu_b), abs=0.05)


# Configurations of the founding 784-200-200-10 net (and deeper ones) on real MNIST, biases with and without a
# mean: the prediction within 15 % of the measured pre-activation std on every hidden layer where the theory
# applies. The 10 logits are not a wide layer (their std is a spread over 10 random rows): within 25 %.
DOMAIN = [
    ["init=kaiming_normal"], ["init=xavier_normal"], ["init=lecun_normal"], ["init=orthogonal"],
    ["init=kaiming_uniform"], ["init=torch_default", "bias=torch_default"], ["init=he2015/small_normal"],
    ["init=kaiming_normal", "bias=constant", "bias.value=-0.5"], ["init=kaiming_normal", "bias=constant", "bias.value=0.3"],
    ["init=kaiming_normal", "bias=constant", "bias.value=-3"], ["init=xavier_normal", "bias=constant", "bias.value=0.5"],
    ["init=kaiming_normal", "bias=normal", "bias.mean=-0.2", "bias.std=0.1"],
    ["init=xavier_normal", "model.activation=tanh", "bias=normal", "bias.mean=0.3", "bias.std=0.2"],
    ["init=xavier_normal", "model.activation=tanh", "bias=constant", "bias.value=-1"],
    ["init=xavier_normal", "model.activation=sigmoid", "bias=constant", "bias.value=-2"],
    ["init=kaiming_normal", "model.activation=leaky_relu", "bias=constant", "bias.value=-0.2"],
    ["init=kaiming_normal", "model.depth=6", "bias=normal", "bias.mean=-0.1", "bias.std=0.05"],
    ["init=xavier_normal", "model.activation=tanh", "model.depth=6", "bias=constant", "bias.value=0.2"],
    ["init=kaiming_normal", "model.activation=gelu", "bias=constant", "bias.value=-0.5"],
    ["init=lecun_normal", "model.activation=selu", "bias=constant", "bias.value=0.4"],
    ["init=normal"], ["init=variance_scaling", "init.scale=3.0", "model.activation=tanh", "bias=constant", "bias.value=0.7"],
]
OUTSIDE = [(["init=uniform"], "mean-field theory assumes zero-mean weights"),
           (["init=zeros"], "mean-field theory needs random weights"),
           (["init=constant"], "mean-field theory needs random weights")]


def _measured_at_init(settings):
    """Each layer's pre-activation std on 1,000 MNIST test images, by hand (x W^T + b), and the prediction."""
    import torch
    from initlab.build import data as datasets
    from initlab.train.loop import build_model
    from initlab.train.predictions import for_model

    data = datasets.load(settings["data"], torch.device("cpu"))
    model = build_model(settings, data, torch.device("cpu"))
    h, stds = data.test_x[:1000].double(), []
    for i, layer in enumerate(model.requires_grad_(False).linears):
        pre = h @ layer.weight.double().T + layer.bias.double()
        stds.append(float(pre.std()))
        h = model.activations[i](pre)
    return stds, for_model(model, settings["model"], data.input_second_moment)


@pytest.mark.parametrize("overrides", DOMAIN, ids=" ".join)
def test_the_prediction_holds_within_15_percent_wherever_the_theory_applies(overrides):
    from conftest import make_config
    from initlab.config.check import validate

    measured, predicted = _measured_at_init(validate(make_config(*overrides)))
    assert predicted["applies"] is True and predicted["why_not"] is None
    assert measured[:-1] == pytest.approx(predicted["predicted_preact_std"][:-1], rel=0.15)
    assert measured[-1] == pytest.approx(predicted["predicted_preact_std"][-1], rel=0.25)


@pytest.mark.parametrize("overrides, why", OUTSIDE, ids=lambda o: " ".join(o) if isinstance(o, list) else "")
def test_weights_outside_the_theory_get_no_prediction_and_say_why(overrides, why):
    from conftest import make_config
    from initlab.config.check import validate

    _, predicted = _measured_at_init(validate(make_config(*overrides)))
    assert predicted["applies"] is False and why in predicted["why_not"]
    assert "predicted_preact_std" not in predicted and predicted["chi1"] is None
