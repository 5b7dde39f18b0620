"""The `stuck` rule: a flat loss with every gradient ~0, after training or while it trains (stop_on)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from initlab.diagnosis.evidence import Context, Evidence, Finding, fmax, fmin, fmt


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
    ends that way at `stuck_log_steps` consecutive log steps, whatever its length."""
    grad_steps, top = ev.grad_max()
    if not len(grad_steps) or not ev.n_layers or not len(ev.loss_values):
        return None
    found = _flat_and_still(ev, th, th["window"]) if len(ev.loss_values) >= th["window"] else None
    if found is None and absorbing:
        found = _stuck_at_the_end(ev, th)
    if found is None:
        return None
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
