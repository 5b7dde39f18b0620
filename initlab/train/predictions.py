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


def for_model(model, model_cfg: dict, q0: float) -> Optional[dict]:
    """The mean-field predictions for an initialized MLP (its weights as drawn, before training):
    each layer's sigma_w^2 = fan_in * mean(W^2) and sigma_b^2 = mean(b^2), the predicted
    pre-activation std of every layer from the input's second moment q0, and for the layers fed
    by the activation (the hidden-to-hidden layers; their median sigma_w^2 and sigma_b^2): q*, chi_1 at q*, the gradient's
    depth scale -1/ln chi_1, the correlation fixed point c*, chi_c at c* and xi_c = -1/ln chi_c.
    None for a model whose layers are not the MLP's or whose numbers are not finite."""
    activation = model_cfg.get("activation") or "identity"
    slope = model_cfg.get("negative_slope", 0.01)
    with torch.no_grad():  # one copy from the device for all of them (a vectorized group builds hundreds)
        w = torch.stack([l.weight.double().pow(2).mean() * l.weight.shape[1] for l in model.linears])
        b = torch.stack([l.bias.double().pow(2).mean() if l.bias is not None else w.new_zeros(())
                         for l in model.linears])
        sigma_w2, sigma_b2 = torch.stack([w, b]).tolist()
    if not all(map(math.isfinite, sigma_w2 + sigma_b2 + [q0])):
        return None
    qs = theory.predicted_preact_q(q0, sigma_w2, sigma_b2, [activation] * len(sigma_w2), slope)
    # The layers fed by the hidden activation, readout excluded (its fan-out, and so a fan-avg init's
    # variance, differs): from the second to the last hidden layer; the first for a 1-hidden-layer net.
    fed = slice(1, len(sigma_w2) - 1) if len(sigma_w2) > 2 else slice(0, len(sigma_w2))
    fed_w, fed_b = float(np.median(sigma_w2[fed])), float(np.median(sigma_b2[fed]))
    q_star = theory.fixed_point(fed_w, fed_b, activation, qs[0], slope)
    chi = theory.chi1(q_star if q_star is not None else qs[-1], fed_w, activation, slope)
    c_star = chi_at_c = xi_c = None
    if q_star is not None and q_star > 0:
        c_star = theory.correlation_fixed_point(q_star, fed_w, fed_b, activation, slope)
        chi_at_c = theory.chi_c(c_star, q_star, fed_w, activation, slope) if c_star < 1.0 else chi
        xi_c = theory.attracting_scale(chi_at_c)
    return {"q0": q0, "sigma_w2": sigma_w2, "sigma_b2": sigma_b2, "q_star": q_star, "chi1": chi,
            "depth_scale": theory.depth_scale(chi), "c_star": c_star, "chi_c": chi_at_c, "xi_c": xi_c,
            "predicted_preact_std": [math.sqrt(max(q, 0.0)) for q in qs]}


def with_predictions(theory: Optional[dict], layers):
    """The layers table with rows (step, epoch, layer, 'predicted_preact_std', value) at the first
    recorded step, beside the measured preact_std; unchanged when nothing was recorded or there
    is no prediction."""
    if theory is None or not len(layers):
        return layers
    first = layers[layers.step == layers.step.min()]
    rows = prediction_rows(theory, int(first.step.iloc[0]), int(first.epoch.iloc[0]))
    return pd.concat([layers, records.layers_frame(rows)], ignore_index=True)


def prediction_rows(theory: dict, step: int, epoch: int) -> list[tuple]:
    """The rows with_predictions appends, given the first recorded (step, epoch) of the table."""
    return [(step, epoch, l, "predicted_preact_std", v) for l, v in enumerate(theory["predicted_preact_std"])]
