"""The `stuck` rule: a flat loss with every gradient ~0, after training or while it trains (stop_on)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from initlab.diagnosis.evidence import Context, Evidence, Finding, ends, fmax, fmin, fmt


def _flat_and_still(ev: Evidence, th: dict, window: int) -> Optional[tuple[int, np.ndarray]]:
    """The first step from which, for `window` steps, the loss is flat and every gradient ~0."""
    steps, top = ev.grad_max()
    still = top <= th["zero_grad"]
    if not still.any():
        return None
    # Range of the loss over the next `window` steps, for every step (reversed rolling window).
    ahead = ev.loss[::-1].rolling(window)
    spread = (ahead.max() - ahead.min())[::-1]
    for start in steps[still]:
        in_window = (steps >= start) & (steps < start + window)
        if start in spread.index and spread[start] <= th["flat_tol"] and still[in_window].all():
            return int(start), steps[in_window]
    return None


def _stuck_at_the_end(ev: Evidence, th: dict) -> Optional[tuple[int, np.ndarray]]:
    """An absorbing state, however short the run: the last `stuck_log_steps` or more log steps
    all have every gradient ~0 and the loss has been flat since the first of them."""
    steps, top = ev.grad_max()
    still = top <= th["zero_grad"]
    tail = np.logical_and.accumulate(still[::-1])[::-1]  # True from the last recorded step back to the last moving one
    steps = steps[tail]
    if len(steps) < th["stuck_log_steps"]:
        return None
    after = ev.loss_values[ev.loss_steps >= steps[0]]
    return (int(steps[0]), steps) if fmax(after) - fmin(after) <= th["flat_tol"] else None


def stuck(ev: Evidence, th: dict, absorbing: bool = True) -> Optional[Finding]:
    """Loss flat for `window` steps while every gradient norm is ~0; or, with `absorbing`, the run
    ends that way at `stuck_log_steps` consecutive log steps, whatever its length; or, with
    `absorbing`, no weight ever got a gradient (frozen_weights)."""
    grad_steps, top = ev.grad_max()
    if not len(grad_steps) or not ev.n_layers or not len(ev.loss_values):
        return None
    found = _flat_and_still(ev, th, th["window"]) if len(ev.loss_values) >= th["window"] else None
    if found is None and absorbing:
        found = _stuck_at_the_end(ev, th)
    if found is None:
        return frozen_weights(ev, th) if absorbing else None
    start, steps = found
    level = float(ev.loss.loc[start:start + th["window"] - 1].mean())
    values = {"loss": level, "window": th["window"], "max_grad_norm": float(fmax(top[np.isin(grad_steps, steps)]))}
    at_chance = abs(level - ev.ln_c) < 1e-3
    where = f"ln {ev.context.num_classes} = {ev.ln_c:.6f}, the loss of a uniform prediction," if at_chance else fmt(level)
    dead = ev.wide("dead_fraction")
    out = ev.n_layers - 1
    if ev.context.output_activation == "relu" and (dead.loc[steps, out] == 1).all():
        why = ("every output logit is <= 0 for every sample, so the output ReLU outputs 0 for all classes "
               "and passes no gradient back to any layer")
        values["dead_output_fraction"] = 1.0
    else:
        why = "no layer receives a gradient, so nothing can change"
    return Finding("stuck", f"From step {start} the loss sits at {where} and every gradient norm is ~0 "
                            f"(<= {fmt(th['zero_grad'])}): {why}.",
                   step=start, layers=list(range(ev.n_layers)), values=values)


def stuck_while_training(layers: pd.DataFrame, curves: pd.DataFrame, epoch: int, first: int, losses: list[float],
                         context: Context, thresholds: dict) -> Optional[Finding]:
    """The `stuck` rule on a run still training (trainer.stop_on=[stuck]).

    `losses` are the current epoch's batch losses from step `first` on: not in `curves` yet.
    """
    now = pd.DataFrame({"step": range(first, first + len(losses)), "epoch": epoch, "metric": "train_loss",
                        "value": losses})
    # Only a full window stops a run: a stretch of zero gradients early on can still end (the
    # founding net meets a positive logit now and then during its first epoch).
    return stuck(Evidence(layers, pd.concat([curves, now]), context), thresholds, absorbing=False)


def stuck_check_due(stop_on: list, step: int, window: int) -> bool:
    """Whether an early-stop check for `stuck` runs after `step` steps: every `window` steps."""
    return "stuck" in stop_on and step >= window and step % window == 0


def frozen_weights(ev: Evidence, th: dict) -> Optional[Finding]:
    """Every weight-gradient norm exactly 0 at every recorded step (at least `stuck_log_steps` of them):
    no weight can ever change, so the net cannot learn anything about its input. Biases may still move
    (the output bias learns the class prior, so the loss drifts in its fourth decimal, past `flat_tol`):
    stuck all the same. Exactly 0, not ~0: a vanishing gradient is small, this one is absent."""
    steps, weights = ev.values("weight_grad_norm")
    if len(steps) < th["stuck_log_steps"] or not (fmax(weights, axis=1) == 0).all():
        return None
    first, last = float(ev.loss_values[0]), float(ev.loss_values[-1])
    dead = dead_from_the_start(ev, th)
    if dead:
        layer = dead[0]
        below = negative_bias_means(ev, [layer])
        pushed = f" (its biases' mean is {fmt(below[layer])})" if below else ""
        why = (f"hidden layer {layer} is 100% dead from the first step: every unit outputs 0 for every sample"
               f"{pushed}, so no gradient passes it back and the layers after it see a constant input")
    else:
        why = "no gradient reaches any weight"
    return Finding("stuck", f"No weight ever gets a gradient: every weight-gradient norm is exactly 0 at all "
                            f"{len(steps)} recorded steps; {why}. Only biases move, which can learn the class prior "
                            f"and nothing about the input (loss {fmt(first)} -> {fmt(last)}; {ends(ev)}).",
                   step=int(steps[0]), layers=dead or list(range(ev.n_layers)),
                   values={"first_loss": first, "last_loss": last, "dead_layers": dead})


def dead_from_the_start(ev: Evidence, th: dict) -> list[int]:
    """The hidden layers whose every unit is dead (outputs exactly 0 for the whole batch) at every recorded
    step of the first `window` steps (the first one at least): born dead, not killed later by training."""
    steps, dead = ev.values("dead_fraction")
    if not len(steps) or dead.shape[1] < 2:
        return []
    early = dead[(steps < th["window"]) | (steps == steps[0])]
    return [int(l) for l in range(dead.shape[1] - 1) if (early[:, l] == 1.0).all()]


def negative_bias_means(ev: Evidence, layers: list[int]) -> dict[int, float]:
    """The bias mean of each of `layers` that is below 0 (the run's recorded theory inputs): what pushes a
    born-dead layer's pre-activations below 0, when it is the bias."""
    means = (ev.context.theory or {}).get("bias_mean") or []
    return {l: means[l] for l in layers if l < len(means) and means[l] is not None and means[l] < 0}
