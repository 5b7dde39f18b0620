"""The mean-field theory's predictions for a built, initialized MLP (theory.py holds the maps), and
the rows they add to its layers table beside the measured pre-activation stds."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd
import torch

from initlab import theory
from initlab.store import records


# Where a layer's weights stop being the theory's i.i.d. zero-mean draw. A mean counts when it is real (past
# MEAN_Z standard errors of a zero-mean draw's sample mean, std / sqrt(fan_in fan_out): never, for a
# zero-mean init of any size) and when it matters: it moves a pre-activation by sqrt(fan_in) |mean| / std of
# the std of its zero-mean part (for inputs of one sign, as after a ReLU), and past MEAN_SHIFT that move
# changes the next layer's second moment by more than the 15 % the predictions are held to.
MEAN_Z = 5.0
MEAN_SHIFT = 0.1


def for_model(model, model_cfg: dict, q0: float) -> Optional[dict]:
    """The mean-field predictions for an initialized MLP (its weights as drawn, before training):
    each layer's sigma_w^2 = fan_in * mean(W^2), its biases' mean mu_b and variance sigma_b^2, the
    predicted pre-activation std of every layer from the input's second moment q0, and for the layers
    fed by the activation (the hidden-to-hidden layers; their median sigma_w^2, sigma_b^2 and mu_b): q*,
    chi_1 at q*, the gradient's depth scale -1/ln chi_1, the correlation fixed point c*, chi_c at c* and
    xi_c = -1/ln chi_c. `applies` is False, with the reason in `why_not` and no prediction, for weights the
    theory does not describe (constant, or with a mean: theory.py assumes i.i.d. zero-mean draws).
    None for a model whose layers are not the MLP's or whose numbers are not finite."""
    weights = [w.unsqueeze(0) for w in model.effective_weights()]  # times the layers' multipliers (param.py)
    biases = [(l.bias if l.bias is not None else l.weight.new_zeros(1)).unsqueeze(0) for l in model.linears]
    return from_moments(moments(weights, biases)[0], [tuple(l.weight.shape) for l in model.linears], model_cfg, q0)


def moments(weights: list[torch.Tensor], biases: list[torch.Tensor]) -> list[list[list[float]]]:
    """Per member, per layer: fan_in * mean(W^2), mean(W), std(W), mean(b), var(b) (population), in
    float64, of stacked weights (members, out, in) and biases (members, out): one pass for a whole
    group (stacked/at_init.py), one copy from the device (a vectorized group holds hundreds)."""
    with torch.no_grad():
        rows = []
        for w, b in zip(weights, biases):
            w, b = w.detach().double(), b.detach().double()
            std_w, mean_w = torch.std_mean(w, dim=(1, 2), correction=0)
            var_b, mean_b = torch.var_mean(b, dim=1, correction=0)
            rows.append(torch.stack([w.pow(2).mean(dim=(1, 2)) * w.shape[2], mean_w, std_w, mean_b, var_b], 1))
        return torch.stack(rows, 2).tolist()  # (members, 5, layers)


def from_moments(found_moments: list[list[float]], shapes: list[tuple[int, int]], model_cfg: dict,
                 q0: float) -> Optional[dict]:
    """for_model's predictions from one member's moments() and its layers' (fan_out, fan_in)."""
    activation = model_cfg.get("activation") or "identity"
    slope = model_cfg.get("negative_slope", 0.01)
    sigma_w2, mean_w, std_w, mu_b, sigma_b2 = found_moments
    if not all(map(math.isfinite, sigma_w2 + mean_w + std_w + mu_b + sigma_b2 + [q0])):
        return None
    # The maps are the infinite-width limit; `widths` says at which widths (each layer's fan-out) they are compared
    found = {"q0": q0, "widths": [fan_out for fan_out, _ in shapes], "sigma_w2": sigma_w2, "sigma_b2": sigma_b2,
             "bias_mean": mu_b}
    why_not = outside_the_theory(mean_w, std_w, shapes)
    if why_not is not None:
        return {"applies": False, "why_not": why_not, **found,
                **dict.fromkeys(("q_star", "chi1", "depth_scale", "c_star", "chi_c", "xi_c"))}
    qs = theory.predicted_preact_q(q0, sigma_w2, sigma_b2, [activation] * len(sigma_w2), slope, mu_b)
    # The layers fed by the hidden activation, readout excluded (its fan-out, and so a fan-avg init's
    # variance, differs): from the second to the last hidden layer; the first for a 1-hidden-layer net.
    fed = slice(1, len(sigma_w2) - 1) if len(sigma_w2) > 2 else slice(0, len(sigma_w2))
    fed_w, fed_b, fed_mu = (float(np.median(v[fed])) for v in (sigma_w2, sigma_b2, mu_b))
    q_star = theory.fixed_point(fed_w, fed_b, activation, qs[0], slope, mu=fed_mu)
    chi = theory.chi1(q_star if q_star is not None else qs[-1], fed_w, activation, slope, fed_mu)
    c_star = chi_at_c = xi_c = None
    if q_star is not None and q_star > 0:
        c_star = theory.correlation_fixed_point(q_star, fed_w, fed_b, activation, slope, fed_mu)
        chi_at_c = theory.chi_c(c_star, q_star, fed_w, activation, slope, fed_mu) if c_star < 1.0 else chi
        xi_c = theory.attracting_scale(chi_at_c)
    return {"applies": True, "why_not": None, **found, "q_star": q_star, "chi1": chi,
            "depth_scale": theory.depth_scale(chi), "c_star": c_star, "chi_c": chi_at_c, "xi_c": xi_c,
            "predicted_preact_std": [math.sqrt(max(q, 0.0)) for q in qs]}


def outside_the_theory(mean_w: list[float], std_w: list[float], shapes: list[tuple[int, int]]) -> Optional[str]:
    """Why the mean-field maps do not describe these weights (per layer: their mean, std and (fan_out, fan_in)),
    or None when they do."""
    for l, (mean, std, (fan_out, fan_in)) in enumerate(zip(mean_w, std_w, shapes)):
        if std == 0.0 and mean == 0.0 and l == len(shapes) - 1:
            continue  # a zero readout (param.zero_readout): its outputs are 0, as predicted; the layers before it are drawn
        if std == 0.0:
            return (f"layer {l}'s weights are all {mean:.3g} (no spread): mean-field theory needs random weights, "
                    f"and a constant init keeps every unit of a layer identical")
        shift = math.sqrt(fan_in) * abs(mean) / std
        if abs(mean) * math.sqrt(fan_in * fan_out) / std > MEAN_Z and shift > MEAN_SHIFT:
            return (f"layer {l}'s weights have mean {mean:.3g} against std {std:.3g} (it moves each pre-activation "
                    f"by {shift:.3g} of its spread): mean-field theory assumes zero-mean weights")
    return None


def with_predictions(theory: Optional[dict], layers):
    """The layers table with rows (step, epoch, layer, 'predicted_preact_std', value) at the first
    recorded step, beside the measured preact_std; unchanged when nothing was recorded or there
    is no prediction."""
    if theory is None or not theory.get("applies", True) or not len(layers):
        return layers
    first = layers[layers.step == layers.step.min()]
    rows = prediction_rows(theory, int(first.step.iloc[0]), int(first.epoch.iloc[0]))
    return pd.concat([layers, records.layers_frame(rows)], ignore_index=True)


def prediction_rows(theory: dict, step: int, epoch: int) -> list[tuple]:
    """The rows with_predictions appends, given the first recorded (step, epoch) of the table."""
    if not theory.get("applies", True):
        return []
    return [(step, epoch, l, "predicted_preact_std", v) for l, v in enumerate(theory["predicted_preact_std"])]
