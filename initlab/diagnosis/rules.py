"""The other rules: failed, diverged, symmetric, init_too_large, updates_too_small, not_learning,
dead_units and saturation."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from initlab.diagnosis.evidence import Evidence, Finding, ends, fmax, fmt, nanmedian


def failed(ev: Evidence, th: dict) -> Optional[Finding]:
    if ev.context.status != "failed":
        return None
    return Finding("failed", f"The run raised {ev.context.error}; see error.txt for the traceback.",
                   values={"error": ev.context.error})


def diverged(ev: Evidence, th: dict) -> Optional[Finding]:
    if ev.context.status != "diverged":
        return None
    step = ev.context.diverged_at_step
    # The loss is checked at log steps only (each check waits for the device), so a run goes on to
    # the next one: say where it stopped, which is where its records end.
    last = int(ev.loss_steps[-1]) if len(ev.loss_steps) else step
    stopped = ("the run stopped there" if step is None or last <= step
               else f"the run stopped at step {last}, the next check of the loss (every trainer.log_every steps)")
    return Finding("diverged", f"The training loss became non-finite at step {step}; {stopped}.",
                   step=step, values={"loss": None, "last_step": last})


def symmetric(ev: Evidence, th: dict) -> Optional[Finding]:
    """A constant init: the units of a hidden layer start identical, so they stay identical."""
    layers = ev.context.symmetric_layers
    if not layers:
        return None
    return Finding(
        "symmetric",
        f"Symmetric init: every unit of hidden layer(s) {layers} starts identical (equal weight rows and biases, "
        f"equal columns in the next layer), so all of a layer's units get the same gradient and stay identical: "
        f"each layer acts as a single unit ({ends(ev)}). Break the symmetry with a random init.",
        step=0, layers=list(layers), values={"test_accuracy": ev.final("test_accuracy")})


def init_too_large(ev: Evidence, th: dict) -> Optional[Finding]:
    """A first loss far above ln C, or huge first gradient norms: the init's scale is too large."""
    if not len(ev.loss_values):
        return None
    first_loss = float(ev.loss_values[0])
    _, grad = ev.values("weight_grad_norm")
    first_grad = float(fmax(grad[0])) if grad.size else math.nan
    high_loss = first_loss >= th["init_loss_ratio"] * ev.ln_c
    high_grad = first_grad > th["init_grad_norm"]
    if not (high_loss or high_grad):
        return None
    parts = []
    if high_loss:
        parts.append(f"the first batch loss is {fmt(first_loss)}, {fmt(first_loss / ev.ln_c)}x ln "
                     f"{ev.context.num_classes} = {ev.ln_c:.3f} (a fresh net should start near it; threshold "
                     f"{fmt(th['init_loss_ratio'])}x)")
    if high_grad:
        parts.append(f"the first weight-gradient norms reach {fmt(first_grad)} (threshold {fmt(th['init_grad_norm'])})")
    return Finding("init_too_large", "The init is too large: " + " and ".join(parts) + f"; {ends(ev)}.",
                   step=int(ev.loss_steps[0]), layers=list(range(ev.n_layers)),
                   values={"first_loss": first_loss, "first_grad_norm": first_grad})


def _median_update_ratio(ev: Evidence) -> float:
    ratio = ev.values("update_ratio")[1].ravel()
    ratio = ratio[np.isfinite(ratio)]
    return float(np.median(ratio)) if len(ratio) else math.nan


def updates_too_small(ev: Evidence, th: dict) -> Optional[Finding]:
    """Update ratios far below the usual ~1e-3 while the loss barely falls: the learning rate."""
    if ev.context.status != "completed" or not len(ev.loss_values):
        return None
    ratio = _median_update_ratio(ev)
    first, last, fell = ev.loss_fall(th)
    if not (0 < ratio < th["small_update_ratio"] and fell < th["min_loss_fall"]):
        return None
    # Tiny updates from a vanishing signal or dead units are their fault, not the learning rate's.
    if ev.signal_shrink() < th["weak_signal"] or (ev.dead_hidden() > th["dead_fraction"]).any():
        return None
    lr = ev.final("lr")
    return Finding(
        "updates_too_small",
        f"Updates too small: the median update ratio ||dW||/||W|| is {fmt(ratio)} (the usual band is around 1e-3; "
        f"threshold {fmt(th['small_update_ratio'])}) and the loss fell only {fell:.1%} ({fmt(first)} -> "
        f"{fmt(last)}): the learning rate ({fmt(lr)}) is likely too small for this init.",
        layers=list(range(ev.n_layers)), values={"median_update_ratio": ratio, "loss_fall": fell, "lr": lr})


def not_learning(ev: Evidence, th: dict) -> Optional[Finding]:
    """By the end, the loss has hardly fallen or the test accuracy is near chance: never healthy."""
    if ev.context.status != "completed" or not len(ev.loss_values):
        return None
    first, last, fell = ev.loss_fall(th)
    acc, chance = ev.final("test_accuracy"), ev.context.chance_accuracy
    near_chance = acc <= chance + th["chance_margin"]
    if not (fell < th["min_loss_fall"] or near_chance):
        return None
    what = (f"the test accuracy is {acc:.2%}, near chance ({chance:.2%}, the most frequent class)" if near_chance
            else f"the loss fell only {fell:.1%} ({fmt(first)} -> {fmt(last)})")
    return Finding("not_learning", f"Not learning: {what} after {int(ev.loss_steps[-1]) + 1} steps; "
                                   f"{_likeliest_cause(ev, th)}.",
                   layers=list(range(ev.n_layers)),
                   values={"test_accuracy": acc, "chance_accuracy": chance, "first_loss": first, "last_loss": last,
                           "loss_fall": fell})


def _likeliest_cause(ev: Evidence, th: dict) -> str:
    """The mechanism the records point at, in words, for `not_learning`."""
    if ev.context.symmetric_layers:
        return (f"the likeliest cause: a symmetric init (the units of hidden layer(s) {ev.context.symmetric_layers} "
                f"are identical)")
    steps, top = ev.grad_max()
    zero = float((top <= th["zero_grad"]).mean()) if len(steps) and ev.n_layers else 0.0
    dead_hidden = ev.dead_hidden()
    if zero >= 0.5:
        return f"the likeliest cause: zero gradients (every gradient is ~0 at {zero:.0%} of the recorded steps)"
    if (dead_hidden > th["dead_fraction"]).any():
        return (f"the likeliest cause: dead units (up to {fmax(dead_hidden):.0%} of a hidden layer's units never "
                f"activate on the test set)")
    shrink = ev.signal_shrink()
    if shrink < th["weak_signal"]:
        return (f"the likeliest cause: a vanishing signal (the activations' std shrinks {fmt(shrink)}x from the first "
                f"to the last hidden layer at the start; a depth-preserving init such as kaiming_normal keeps it ~1)")
    _, grad = ev.values("weight_grad_norm")
    if grad.size and grad.shape[1] > 1:
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 is NaN and skipped, as in pandas
            ratio = nanmedian(grad[:, 0] / grad[:, -1])
        if ratio < th["weak_signal"]:
            return (f"the likeliest cause: vanishing gradients (layer 0's weight-gradient norm is {fmt(ratio)}x the "
                    f"output layer's)")
    update = _median_update_ratio(ev)
    if update < th["small_update_ratio"] * 10:
        return (f"the likeliest cause: updates too small (median update ratio {fmt(update)}, against ~1e-3 usually): "
                f"raise the learning rate ({fmt(ev.final('lr'))})")
    return (f"no single cause stands out in the records (signal ratio {fmt(shrink)}, median update ratio "
            f"{fmt(update)}): train longer or try another learning rate or init")


def dead_units(ev: Evidence, th: dict) -> Optional[Finding]:
    steps, dead = ev.values("eval_dead_fraction")
    if not dead.size:
        return None
    final = dead[-1]
    out = ev.n_layers - 1
    layers = [l for l in range(len(final)) if l != out and final[l] > th["dead_fraction"]]
    classes = ev.context.dead_outputs
    if not layers and not classes:
        return None
    parts = []
    if layers:
        parts.append("hidden layers " + ", ".join(f"{l} ({final[l]:.0%} dead)" for l in layers)
                     + " have units that never activate on the test set")
    if classes:
        parts.append(f"the logits of classes {classes} are 0 for every test sample (the output "
                     f"{ev.context.output_activation} kills them), so those classes get no gradient")
        layers.append(out)
    first = steps[(dead[:, layers] > th["dead_fraction"]).any(axis=1) | (dead[:, out] > 0)]
    return Finding("dead_units", "Dead units: " + "; ".join(parts) + ".",
                   step=int(first[0]) if len(first) else None, layers=layers,
                   values={"dead_fraction": {int(l): float(final[l]) for l in layers}, "dead_classes": classes})


def saturation(ev: Evidence, th: dict) -> Optional[Finding]:
    steps, sat = ev.values("saturated_fraction")
    over = sat > th["saturation"]
    if not over.any():
        return None
    layers = [int(l) for l in np.flatnonzero(over.any(axis=0))]
    step = int(steps[int(np.argmax(over.any(axis=1)))])
    top = fmax(sat, axis=0)
    worst = max(layers, key=lambda l: top[l])
    return Finding(
        "saturation",
        f"Saturated {ev.context.activation}: up to {top[worst]:.0%} of layer {worst}'s outputs sit in the "
        f"flat region (from step {step}; threshold {th['saturation']:.0%}), where almost no gradient passes.",
        step=step, layers=layers, values={"max_saturated_fraction": float(top[worst])},
    )
