"""Mean-field theory (initlab/theory.py) against closed forms, Monte Carlo and the papers' numbers."""

import math

import numpy as np
import pytest

from initlab import theory
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
    z = np.random.default_rng(0).standard_normal(2_000_000)
    for q in (0.5, 2.0):
        assert theory.gaussian_mean(lambda x: phi(x) ** 2, q) == pytest.approx(np.mean(phi(math.sqrt(q) * z) ** 2), rel=5e-3)
        assert theory.gaussian_mean(lambda x: dphi(x) ** 2, q) == pytest.approx(np.mean(dphi(math.sqrt(q) * z) ** 2), rel=5e-3)


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
                                                         "tanh"), rel=1e-6)


@pytest.mark.parametrize("activation", ["tanh", "gelu", "selu", "leaky_relu"])
def test_the_two_input_quadrature_matches_monte_carlo(activation):
    phi, dphi = theory._phi(activation)
    z1, z2 = np.random.default_rng(2).standard_normal((2, 2_000_000))
    for q, c in ((0.7, 0.3), (2.0, 0.9), (1.0, -0.5)):
        u1, u2 = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
        assert theory._pair_mean(phi, phi, q, c) == pytest.approx(np.mean(phi(u1) * phi(u2)), rel=1e-2, abs=1e-3)
        assert theory._pair_mean(dphi, dphi, q, c) == pytest.approx(np.mean(dphi(u1) * dphi(u2)), rel=1e-2, abs=1e-3)


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
