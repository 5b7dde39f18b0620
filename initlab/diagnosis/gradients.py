"""Rules on the size of the signal and of the gradients: exploding and vanishing, with what the
mean-field theory says of each."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from initlab.diagnosis.evidence import Evidence, Finding, fmax, fmt, nanmean, nanmedian


def _gradient_theory(ev: Evidence, vanish: bool) -> tuple[str, dict]:
    """What mean-field theory says about a vanishing (or exploding) gradient, as a sentence to append,
    and the numbers: chi_1 multiplies the back-propagated gradient's squared norm once per hidden
    layer (Poole et al. 2016; Schoenholz et al. 2017), so L of them multiply it by chi_1^L."""
    t = ev.context.theory or {}
    chi, hidden = t.get("chi1"), ev.n_layers - 1
    if chi is None or hidden < 1 or not t.get("applies", True):  # never cited outside its assumptions
        return "", {}
    total = chi ** hidden
    values = {"chi1": chi, "predicted_grad_sq_factor": total}
    phase = "ordered" if chi < 1 else "chaotic" if chi > 1 else "critical"
    if (vanish and chi < 1 and total < 0.1) or (not vanish and chi > 1 and total > 10):
        xi = t.get("depth_scale")
        scale = f", depth scale {fmt(abs(xi))} layers" if xi is not None else ""
        return (f" Mean-field theory predicts it: chi_1 = {chi:.2f} ({phase} phase{scale}), so each layer multiplies the "
                f"back-propagated gradient's squared norm by {chi:.2f}; {hidden} layers give {total:.1e} (a norm ratio of "
                f"{math.sqrt(total):.1e})."), values
    return (f" Mean-field theory does not predict it at init (chi_1 = {chi:.2f}, {phase} phase; {hidden} layers give "
            f"{total:.1e}): the cause lies elsewhere."), values


def exploding(ev: Evidence, th: dict) -> Optional[Finding]:
    steps, grad = ev.values("weight_grad_norm")
    if not grad.size:
        return None
    finite = np.isfinite(grad)
    bad = ~finite.all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        step = int(steps[row])
        layers = [int(l) for l in np.flatnonzero(~finite[row])]
        return Finding("exploding", f"Gradient norms overflowed (non-finite) at step {step} in layers {layers}.",
                       step=step, layers=layers, values={"first_nonfinite_step": step})
    first = np.where(grad[0] == 0, np.nan, grad[0])
    top = grad.max(axis=0)  # every value is finite here
    growth = top / first
    # Growth from a vanishing start to an ordinary size is recovery, not explosion: count it
    # only where the norm also ends up large.
    grown = [l for l in range(grad.shape[1]) if growth[l] > th["exploding_growth"] and top[l] > th["exploding_min_norm"]]
    # A norm that is large from the first step was born large: init_too_large's finding, not an explosion.
    peak = np.argmax(grad, axis=0)
    big = [l for l in range(grad.shape[1]) if top[l] > th["exploding_norm"] and peak[l] > 0]
    layers = sorted(set(grown) | set(big))
    if not layers:
        return None
    worst = max(layers, key=lambda l: top[l])
    step = int(steps[int(np.argmax(grad[:, worst]))])
    cited, numbers = _gradient_theory(ev, vanish=False)
    return Finding(
        "exploding",
        f"Gradient norms explode: layer {worst}'s grew to {fmt(top[worst])} at step {step} "
        f"({fmt(growth[worst])}x its first value; thresholds: growth "
        f"{fmt(th['exploding_growth'])}x, norm {fmt(th['exploding_norm'])}).{cited}",
        step=step, layers=layers, values={"max_norm": float(top[worst]), "growth": float(growth[worst]), **numbers},
    )


def vanishing(ev: Evidence, th: dict) -> Optional[Finding]:
    steps, grad = ev.values("weight_grad_norm")
    in_window = steps < th["window"]
    early, early_steps = grad[in_window], steps[in_window]
    if not early.size:
        return None
    last = ev.n_layers - 1
    moving = early[:, last] > 0
    ratio, ratio_steps = early[moving, 0] / early[moving, last], early_steps[moving]
    typical_ratio = nanmedian(ratio)  # NaN when no step has a moving output layer
    # A layer-0 gradient of exactly 0 has not shrunk: nothing reaches it (a dead layer, `stuck`).
    if 0 < typical_ratio < th["vanishing_ratio"]:
        median = nanmedian(early, axis=0)
        layers = [l for l in range(len(median)) if median[l] < th["vanishing_ratio"] * median[last]]
        step = int(ratio_steps[ratio < th["vanishing_ratio"]][0])
        cited, numbers = _gradient_theory(ev, vanish=True)
        return Finding(
            "vanishing",
            f"Gradients vanish towards the input: layer 0's weight-gradient norm is {fmt(typical_ratio)}x "
            f"the output layer's ({fmt(median[0])} vs {fmt(median[last])}, medians over the first "
            f"{th['window']} steps; threshold {fmt(th['vanishing_ratio'])}x).{cited}",
            step=step, layers=layers,
            values={"first_to_last_ratio": typical_ratio, "first_layer_norm": float(median[0]),
                    "last_layer_norm": float(median[last]), **numbers},
        )
    early_loss = nanmean(ev.loss_values[ev.loss_steps < th["window"]])
    if not early_loss > th["high_loss"] * ev.ln_c:
        return None  # the loss is falling: whatever the norms are, it trains
    hidden, shrink = ev.hidden_std(), ev.signal_shrink()
    typical = nanmedian(fmax(early, axis=1))  # the largest layer's norm, median over the early steps
    values = {"largest_grad_norm": typical, "first_hidden_std": float(hidden[0]),
              "last_hidden_std": float(hidden[-1]), "signal_ratio": shrink}
    signal = (f"the signal shrinks from std {fmt(hidden[0])} after layer 0 to {fmt(hidden[-1])} "
              f"after layer {len(hidden) - 1}")
    if 0 < shrink < th["vanishing_ratio"]:  # a signal of exactly 0 is a dead layer's (dead_layer), not a shrunk one
        # He et al. 2015, Sec. 2.2: each layer scales the forward signal (and the backward one) by a
        # constant factor, so depth turns a factor below 1 into nothing.
        return Finding(
            "vanishing",
            f"The signal vanishes on its way through the layers: {signal} ({fmt(shrink)}x; threshold "
            f"{fmt(th['vanishing_ratio'])}x), so the output barely depends on the input and the loss stays near "
            f"{fmt(early_loss)}.{_signal_theory(ev)}",
            step=int(early_steps[0]), layers=list(range(ev.n_layers)), values=values)
    # Exactly zero gradients are not vanishing ones: nothing flows at all (see `stuck`).
    if th["zero_grad"] < typical < th["vanishing_norm"]:
        return Finding(
            "vanishing",
            f"Gradients vanish in every layer: the largest weight-gradient norm is {fmt(typical)} (median over the "
            f"first {th['window']} steps; threshold {fmt(th['vanishing_norm'])}) while the loss stays near "
            f"{fmt(early_loss)}; {signal}.",
            step=int(early_steps[0]), layers=list(range(ev.n_layers)), values=values)
    return None


def _signal_theory(ev: Evidence) -> str:
    """The mean-field length map's prediction of the forward signal, when it foresees the shrink."""
    t = ev.context.theory or {}
    predicted = t.get("predicted_preact_std") or [] if t.get("applies", True) else []
    if len(predicted) < 3 or not predicted[0]:
        return ""
    first, last = predicted[0], predicted[-2]  # the first and the last hidden layer's pre-activations
    if last / first >= 0.1:
        return ""
    q_star = ev.context.theory.get("q_star")
    toward = f" (fixed point q* = {fmt(q_star)})" if q_star is not None else ""
    return (f" Mean-field theory predicts it from the init alone: pre-activation std {fmt(first)} at layer 0, "
            f"{fmt(last)} at layer {len(predicted) - 2} ({fmt(last / first)}x){toward}.")
