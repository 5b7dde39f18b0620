"""The other rules: failed, diverged, symmetric, dead_layer, init_too_large, init_too_small,
updates_too_small, not_learning, dead_units and saturation."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from initlab.diagnosis.evidence import Evidence, Finding, ends, fmax, fmt, nanmedian
from initlab.diagnosis.stuck import dead_from_the_start, negative_bias_means


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


def init_too_small(ev: Evidence, th: dict) -> Optional[Finding]:
    """The mirror of init_too_large: the logits start with almost no spread (every class about equally
    likely whatever the input) and the first weight gradients are far below a variance-preserving
    init's, so training starts slowly. Both must hold (thresholds in docs/diagnosis.md, from MNIST nets
    of depth 1-5: every variance-preserving init starts with logit std >= 0.11 and gradients >= 0.43)."""
    steps, pre = ev.values("preact_std")
    _, grad = ev.values("weight_grad_norm")
    if not len(steps) or not grad.size:
        return None
    logit_std, first_grad = float(pre[0, -1]), float(fmax(grad[0]))
    hidden = pre[0, :-1]
    if not (logit_std < th["init_small_logit_std"] and first_grad < th["init_small_grad_norm"]):
        return None
    if logit_std == 0 or first_grad == 0 or (hidden == 0).any():
        return None  # a signal or gradient of exactly 0 is a dead layer's (dead_layer, stuck), not a small one
    path = " -> ".join(fmt(v) for v in pre[0]) if len(pre[0]) <= 8 else f"{fmt(pre[0, 0])} -> ... -> {fmt(logit_std)}"
    t = ev.context.theory or {}
    predicted = t.get("predicted_preact_std") if t.get("applies") else None
    cited = (f" Mean-field theory predicts it from the init alone: {' -> '.join(fmt(v) for v in predicted)}."
             if predicted and len(predicted) <= 8 else "")
    return Finding(
        "init_too_small",
        f"The init is too small: the pre-activation std falls {path} from the first layer to the logits at the "
        f"first step (logit std {fmt(logit_std)}, threshold {fmt(th['init_small_logit_std'])}: every class starts "
        f"about equally likely whatever the input) and the first weight-gradient norms are at most {fmt(first_grad)} "
        f"(threshold {fmt(th['init_small_grad_norm'])}), so training starts slowly; {ends(ev)}.{cited} An init that "
        f"keeps the variance (kaiming_normal for ReLU, xavier_normal for tanh) starts near unit scale.",
        step=int(steps[0]), layers=list(range(ev.n_layers)),
        values={"logit_std": logit_std, "first_grad_norm": first_grad,
                "first_hidden_preact_std": float(hidden[0]) if len(hidden) else None})


def dead_layer(ev: Evidence, th: dict) -> Optional[Finding]:
    """A hidden layer born dead (every unit 0 for every sample from the first step) while some weights still
    get a gradient (else `stuck`): dead units, not a vanishing signal, whatever the numbers after it look like."""
    dead = dead_from_the_start(ev, th)
    if not dead:
        return None
    below = negative_bias_means(ev, dead)
    why = (f" (biases of mean {', '.join(fmt(m) for m in below.values())} push every pre-activation below 0)"
           if below else "")
    return Finding("dead_units", f"Dead layer: every unit of hidden layer(s) {dead} outputs 0 for every sample from "
                                 f"the first step{why}, so nothing before it gets a gradient and nothing after it "
                                 f"sees the input; {ends(ev)}.",
                   step=int(ev.values("dead_fraction")[0][0]), layers=dead, values={"dead_layers": dead})


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
