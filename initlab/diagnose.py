"""Rules that turn a run's records into a verdict with evidence.

Each rule reads the run's tidy tables (through `Evidence`, built once) and returns a Finding or
None. `diagnose` runs them all; the label is the kind of the first finding in RULES order
(the most fundamental failure first), or `healthy` when none fires. Thresholds come from
``conf/diagnose/default.yaml`` and can be overridden like any config value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np
import pandas as pd


@dataclass
class Finding:
    kind: str
    message: str  # one sentence a person understands
    step: Optional[int] = None  # where it began
    layers: list[int] = field(default_factory=list)
    values: dict = field(default_factory=dict)  # the numbers that triggered it


@dataclass
class Context:
    """What the rules need to know about the run besides its tables."""

    num_classes: int
    activation: str
    output_activation: Optional[str]
    status: str = "completed"
    diverged_at_step: Optional[int] = None
    dead_outputs: list[int] = field(default_factory=list)  # classes whose logit was 0 on the whole test set
    error: Optional[str] = None  # "Type: message" when the run raised


class Evidence:
    """Wide views of the tidy tables that the rules share: step x layer per metric, loss per step."""

    def __init__(self, layers: pd.DataFrame, curves: pd.DataFrame, context: Context) -> None:
        self.context = context
        self.ln_c = math.log(context.num_classes) if context.num_classes > 1 else math.nan
        self._layers = layers
        self.loss = curves[curves.metric == "train_loss"].set_index("step").value.sort_index()
        self.n_layers = int(layers.layer.max()) + 1 if len(layers) else 0
        self._wide: dict[str, pd.DataFrame] = {}

    def wide(self, metric: str) -> pd.DataFrame:
        if metric not in self._wide:
            rows = self._layers[self._layers.metric == metric]
            self._wide[metric] = rows.pivot(index="step", columns="layer", values="value").sort_index()
        return self._wide[metric]

    def grads(self) -> pd.DataFrame:
        """Weight- and bias-gradient norms side by side: the largest says whether anything moves."""
        return pd.concat([self.wide("weight_grad_norm"), self.wide("bias_grad_norm")], axis=1)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def failed(ev: Evidence, th: dict) -> Optional[Finding]:
    if ev.context.status != "failed":
        return None
    return Finding("failed", f"The run raised {ev.context.error}; see error.txt for the traceback.",
                   values={"error": ev.context.error})


def diverged(ev: Evidence, th: dict) -> Optional[Finding]:
    if ev.context.status != "diverged":
        return None
    step = ev.context.diverged_at_step
    return Finding("diverged", f"The training loss became non-finite at step {step}; the run stopped there.",
                   step=step, values={"loss": None})


def exploding(ev: Evidence, th: dict) -> Optional[Finding]:
    grad = ev.wide("weight_grad_norm")
    if grad.empty:
        return None
    bad = grad[~np.isfinite(grad).all(axis=1)]
    if len(bad):
        step = int(bad.index[0])
        layers = [int(l) for l in grad.columns if not np.isfinite(grad.loc[step, l])]
        return Finding("exploding", f"Gradient norms overflowed (non-finite) at step {step} in layers {layers}.",
                       step=step, layers=layers, values={"first_nonfinite_step": step})
    first = grad.iloc[0].replace(0, np.nan)
    growth = grad.max() / first
    # Growth from a vanishing start to an ordinary size is recovery, not explosion: count it
    # only where the norm also ends up large.
    grown = [int(l) for l in growth.index
             if growth[l] > th["exploding_growth"] and grad[l].max() > th["exploding_min_norm"]]
    big = [int(l) for l in grad.columns if grad[l].max() > th["exploding_norm"]]
    layers = sorted(set(grown) | set(big))
    if not layers:
        return None
    worst = max(layers, key=lambda l: grad[l].max())
    step = int(grad[worst].idxmax())
    return Finding(
        "exploding",
        f"Gradient norms explode: layer {worst}'s grew to {_fmt(grad[worst].max())} at step {step} "
        f"({_fmt(growth.get(worst, float('nan')))}x its first value; thresholds: growth "
        f"{_fmt(th['exploding_growth'])}x, norm {_fmt(th['exploding_norm'])}).",
        step=step, layers=layers,
        values={"max_norm": float(grad[worst].max()), "growth": float(growth.get(worst, float("nan")))},
    )


def vanishing(ev: Evidence, th: dict) -> Optional[Finding]:
    grad = ev.wide("weight_grad_norm")
    early = grad[grad.index < th["window"]]
    if early.empty:
        return None
    last = ev.n_layers - 1
    moving = early[early[last] > 0]
    ratio = (moving[0] / moving[last]) if len(moving) else pd.Series(dtype=float)
    if len(ratio) and ratio.median() < th["vanishing_ratio"]:
        median = early.median()
        layers = [int(l) for l in median.index if median[l] < th["vanishing_ratio"] * median[last]]
        step = int(ratio[ratio < th["vanishing_ratio"]].index[0])
        return Finding(
            "vanishing",
            f"Gradients vanish towards the input: layer 0's weight-gradient norm is {_fmt(ratio.median())}x "
            f"the output layer's ({_fmt(median[0])} vs {_fmt(median[last])}, medians over the first "
            f"{th['window']} steps; threshold {_fmt(th['vanishing_ratio'])}x).",
            step=step, layers=layers,
            values={"first_to_last_ratio": float(ratio.median()), "first_layer_norm": float(median[0]),
                    "last_layer_norm": float(median[last])},
        )
    early_loss = ev.loss[ev.loss.index < th["window"]]
    if not early_loss.mean() > th["high_loss"] * ev.ln_c:
        return None  # the loss is falling: whatever the norms are, it trains
    std = ev.wide("act_std")
    hidden = std.iloc[0, :-1] if std.shape[1] > 1 else std.iloc[0]  # at the first recorded step
    shrink = float(hidden.iloc[-1] / hidden.iloc[0]) if hidden.iloc[0] > 0 else float("nan")
    typical = float(early.max(axis=1).median())  # the largest layer's norm, median over the early steps
    values = {"largest_grad_norm": typical, "first_hidden_std": float(hidden.iloc[0]),
              "last_hidden_std": float(hidden.iloc[-1]), "signal_ratio": shrink}
    signal = (f"the signal shrinks from std {_fmt(hidden.iloc[0])} after layer 0 to {_fmt(hidden.iloc[-1])} "
              f"after layer {len(hidden) - 1}")
    if shrink < th["vanishing_ratio"]:
        # He et al. 2015, Sec. 2.2: each layer scales the forward signal (and the backward one) by a
        # constant factor, so depth turns a factor below 1 into nothing.
        return Finding(
            "vanishing",
            f"The signal vanishes on its way through the layers: {signal} ({_fmt(shrink)}x; threshold "
            f"{_fmt(th['vanishing_ratio'])}x), so the output barely depends on the input and the loss stays near "
            f"{_fmt(early_loss.mean())}.",
            step=int(early.index[0]), layers=list(range(ev.n_layers)), values=values)
    # Exactly zero gradients are not vanishing ones: nothing flows at all (see `stuck`).
    if th["zero_grad"] < typical < th["vanishing_norm"]:
        return Finding(
            "vanishing",
            f"Gradients vanish in every layer: the largest weight-gradient norm is {_fmt(typical)} (median over the "
            f"first {th['window']} steps; threshold {_fmt(th['vanishing_norm'])}) while the loss stays near "
            f"{_fmt(early_loss.mean())}; {signal}.",
            step=int(early.index[0]), layers=list(range(ev.n_layers)), values=values)
    return None


def stuck(ev: Evidence, th: dict) -> Optional[Finding]:
    """Loss flat for `window` steps while every gradient norm is ~0."""
    window, loss = th["window"], ev.loss
    grads = ev.grads()
    if len(loss) < window or grads.empty:
        return None
    # Range of the loss over the next `window` steps, for every step (reversed rolling window).
    ahead = loss[::-1].rolling(window)
    spread = (ahead.max() - ahead.min())[::-1]
    still = grads.max(axis=1) <= th["zero_grad"]
    for start in still.index[still]:
        in_window = still[(still.index >= start) & (still.index < start + window)]
        if start in spread.index and spread[start] <= th["flat_tol"] and in_window.all():
            break
    else:
        return None
    start = int(start)
    level = float(loss.loc[start:start + window - 1].mean())
    values = {"loss": level, "window": window, "max_grad_norm": float(grads.loc[in_window.index].max().max())}
    at_chance = abs(level - ev.ln_c) < 1e-3
    where = f"ln {ev.context.num_classes} = {ev.ln_c:.6f}, the loss of a uniform prediction," if at_chance else _fmt(level)
    dead = ev.wide("dead_fraction")
    out = ev.n_layers - 1
    if ev.context.output_activation == "relu" and (dead.loc[in_window.index, out] == 1).all():
        why = ("every output logit is <= 0 for every sample, so the output ReLU outputs 0 for all classes "
               "and passes no gradient back to any layer")
        values["dead_output_fraction"] = 1.0
    else:
        why = "no layer receives a gradient, so nothing can change"
    return Finding("stuck", f"From step {start} the loss sits at {where} and every gradient norm is ~0 "
                            f"(<= {_fmt(th['zero_grad'])}): {why}.",
                   step=start, layers=list(range(ev.n_layers)), values=values)


def stuck_while_training(layers: pd.DataFrame, curves: pd.DataFrame, epoch: int, first: int, losses: list[float],
                         context: Context, thresholds: dict) -> Optional[Finding]:
    """The `stuck` rule on a run still training (trainer.stop_on=[stuck]).

    `losses` are the current epoch's batch losses from step `first` on: not in `curves` yet.
    """
    now = pd.DataFrame({"step": range(first, first + len(losses)), "epoch": epoch, "metric": "train_loss",
                        "value": losses})
    return stuck(Evidence(layers, pd.concat([curves, now]), context), thresholds)


def stuck_check_due(stop_on: list, step: int, window: int) -> bool:
    """Whether an early-stop check for `stuck` runs after `step` steps: every `window` steps."""
    return "stuck" in stop_on and step >= window and step % window == 0


def dead_units(ev: Evidence, th: dict) -> Optional[Finding]:
    dead = ev.wide("eval_dead_fraction")
    if dead.empty:
        return None
    final = dead.iloc[-1]
    out = ev.n_layers - 1
    layers = [int(l) for l in final.index if l != out and final[l] > th["dead_fraction"]]
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
    first = dead[(dead[layers] > th["dead_fraction"]).any(axis=1) | (dead[out] > 0)].index
    return Finding("dead_units", "Dead units: " + "; ".join(parts) + ".",
                   step=int(first[0]) if len(first) else None, layers=layers,
                   values={"dead_fraction": {int(l): float(final[l]) for l in layers}, "dead_classes": classes})


def saturation(ev: Evidence, th: dict) -> Optional[Finding]:
    sat = ev.wide("saturated_fraction")
    if sat.empty:
        return None
    over = sat > th["saturation"]
    if not over.any().any():
        return None
    layers = [int(l) for l in sat.columns if over[l].any()]
    step = int(over.any(axis=1).idxmax())
    worst = max(layers, key=lambda l: sat[l].max())
    return Finding(
        "saturation",
        f"Saturated {ev.context.activation}: up to {sat[worst].max():.0%} of layer {worst}'s outputs sit in the "
        f"flat region (from step {step}; threshold {th['saturation']:.0%}), where almost no gradient passes.",
        step=step, layers=layers, values={"max_saturated_fraction": float(sat[worst].max())},
    )


# Most fundamental first: the label is the first of these that fires.
RULES: tuple[Callable[[Evidence, dict], Optional[Finding]], ...] = (
    failed, diverged, exploding, vanishing, stuck, dead_units, saturation,
)


def diagnose(layers: pd.DataFrame, curves: pd.DataFrame, context: Context, thresholds: dict) -> dict:
    """The verdict for one run: {'label': ..., 'findings': [...]} (plain data, for summary.json)."""
    ev = Evidence(layers, curves, context)
    # With no statistics recorded, only the run's status can speak.
    rules = RULES if len(layers) else (failed, diverged)
    findings = [f for f in (rule(ev, thresholds) for rule in rules) if f is not None]
    label = findings[0].kind if findings else "healthy"
    return {"label": label, "findings": [asdict(f) for f in findings]}


def describe(diagnosis: dict) -> list[str]:
    """Lines to print at the end of a run."""
    lines = [f"diagnosis: {diagnosis['label']}"]
    lines += [f"  - {f['kind']}: {f['message']}" for f in diagnosis["findings"]]
    return lines
