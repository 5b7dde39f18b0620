"""Rules that turn a run's records into a verdict with evidence.

Each rule reads the run's tidy tables (through `Evidence`, built once) and returns a Finding or
None. `diagnose` runs them all; the label is the kind of the first finding in RULES order
(the most fundamental failure first), or `healthy` when none fires. Thresholds come from
``conf/diagnose/default.yaml`` and can be overridden like any config value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
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
    chance_accuracy: float = math.nan  # the test accuracy of always answering the most frequent class
    symmetric_layers: list[int] = field(default_factory=list)  # hidden layers whose units start identical
    theory: Optional[dict] = None  # the mean-field predictions at init (predictions.for_model), cited when they explain a finding


class Evidence:
    """What the rules read, computed once: per metric a step x layer array, the loss per step.

    The rules work on numpy arrays (`values`): pandas' per-call overhead made a diagnosis of a
    short run cost more than the run's training in a vectorized sweep. `wide` gives the same
    numbers as labelled DataFrames, for reading and for the tests.
    """

    def __init__(self, layers: pd.DataFrame, curves: pd.DataFrame, context: Context) -> None:
        self.context = context
        self.ln_c = math.log(context.num_classes) if context.num_classes > 1 else math.nan
        self._layers, self._curves = layers, curves
        # The curves by metric, in step order.
        steps, metrics = curves.step.to_numpy(), curves.metric.to_numpy()
        order = np.argsort(steps, kind="stable")
        steps, metrics, values = steps[order], metrics[order], curves.value.to_numpy()[order]
        self._finals = dict(zip(metrics.tolist(), values.tolist()))  # the last one of each metric wins
        is_loss = metrics == "train_loss"
        self.loss_steps, self.loss_values = steps[is_loss], values[is_loss].astype(float)
        self.n_layers = int(layers.layer.max()) + 1 if len(layers) else 0
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._wide: dict[str, pd.DataFrame] = {}
        self._rows: Optional[dict[str, np.ndarray]] = None  # each metric's row numbers in the layers table
        self._table: tuple[np.ndarray, ...] = ()  # its step, layer and value columns
        self._columns = np.unique(layers.layer.to_numpy()) if len(layers) else np.array([], dtype=int)

    @cached_property
    def loss(self) -> pd.Series:
        """The batch loss by step (made when a rule asks: only the stuck check does, when gradients are ~0)."""
        return pd.Series(self.loss_values, index=pd.Index(self.loss_steps, name="step"), name="value")

    def values(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values): the metric's recorded steps, sorted, and a step x layer array whose
        column l is layer l (NaN where the metric has no value); no rows when it was not recorded."""
        if metric not in self._arrays:
            if self._rows is None:  # the table's columns as arrays, once (a column access costs ~30 us)
                t = self._layers
                codes, names = pd.factorize(t.metric)
                self._rows = {name: np.flatnonzero(codes == k) for k, name in enumerate(names)}
                self._table = t.step.to_numpy(), t.layer.to_numpy(), t.value.to_numpy()
            rows = self._rows.get(metric, np.array([], dtype=int))
            step, layer, value = self._table
            steps, row = np.unique(step[rows], return_inverse=True)
            array = np.full((len(steps), self.n_layers), np.nan)
            array[row, layer[rows]] = value[rows]
            self._arrays[metric] = steps, array
        return self._arrays[metric]

    def wide(self, metric: str) -> pd.DataFrame:
        """step x layer for one metric as a DataFrame (empty when the run did not record it).

        As `layers.set_index(["metric", "step", "layer"]).value.unstack("layer")` then the
        metric's rows: its own steps, sorted, and every layer of the table as columns (NaN
        where the metric has none). tests/test_diagnose.py compares the two.
        """
        if metric not in self._wide:
            steps, array = self.values(metric)
            if not len(steps):
                frame = pd.DataFrame(index=pd.Index([], name="step"), columns=pd.Index([], name="layer"))
            else:
                frame = pd.DataFrame(array[:, self._columns], index=pd.Index(steps, name="step"),
                                     columns=pd.Index(self._columns, name="layer"))
            self._wide[metric] = frame
        return self._wide[metric]

    def grad_max(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, the largest weight- or bias-gradient norm of any layer at each): whether anything moves."""
        if "grad_max" not in self._arrays:
            (ws, w), (bs, b) = self.values("weight_grad_norm"), self.values("bias_grad_norm")
            steps = np.union1d(ws, bs)
            both = np.full((len(steps), 2 * self.n_layers), np.nan)
            both[np.searchsorted(steps, ws), :self.n_layers] = w
            both[np.searchsorted(steps, bs), self.n_layers:] = b
            self._arrays["grad_max"] = steps, _fmax(both, axis=1)
        return self._arrays["grad_max"]

    def final(self, metric: str) -> float:
        """The last value of an epoch metric in the curves (test_accuracy, ...), NaN when there is none."""
        return float(self._finals.get(metric, math.nan))

    def loss_fall(self, th: dict) -> tuple[float, float, float]:
        """(first, last, fraction fallen): the mean batch loss over the first and the last
        `progress_steps` steps, and how much of the first the run shed by the end."""
        n = max(1, min(th["progress_steps"], len(self.loss_values) // 2))
        first, last = _nanmean(self.loss_values[:n]), _nanmean(self.loss_values[-n:])
        return first, last, (first - last) / first if first > 0 else math.nan

    def dead_hidden(self) -> np.ndarray:
        """Each hidden layer's fraction of units dead on the test set after the last epoch."""
        _, dead = self.values("eval_dead_fraction")
        return dead[-1, :-1] if dead.shape[1] > 1 and len(dead) else np.array([])

    def hidden_std(self) -> np.ndarray:
        """Each hidden layer's activation std at the first recorded step (all layers of a net without any)."""
        _, std = self.values("act_std")
        if not len(std):
            return np.array([])
        return std[0, :-1] if std.shape[1] > 1 else std[0]

    def signal_shrink(self) -> float:
        """Last / first hidden layer's activation std at the first recorded step (He et al. 2015)."""
        hidden = self.hidden_std()
        return float(hidden[-1] / hidden[0]) if len(hidden) and hidden[0] > 0 else math.nan


# NaN-skipping reductions, as pandas' (an all-NaN or empty input gives NaN, and no warning).
def _fmax(a: np.ndarray, axis=None):
    if a.size == 0:
        return np.full(a.shape[1 - axis], np.nan) if axis is not None and a.ndim == 2 else math.nan
    return np.fmax.reduce(a, axis=axis)


def _fmin(a: np.ndarray) -> float:
    return float(np.fmin.reduce(a)) if a.size else math.nan


def _nanmean(a: np.ndarray) -> float:
    a = a[~np.isnan(a)]
    return float(a.mean()) if len(a) else math.nan


def _nanmedian(a: np.ndarray, axis=None):
    if axis is None:
        a = a[~np.isnan(a)]
        return float(np.median(a)) if len(a) else math.nan
    return np.array([_nanmedian(column) for column in np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])])


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _ends(ev: Evidence) -> str:
    """How the run ended, for a message: its final test accuracy when it has one."""
    acc = ev.final("test_accuracy")
    return f"the run ends at {acc:.2%} test accuracy" if math.isfinite(acc) else f"the run ended {ev.context.status}"


def _strict(value):
    """Plain data for summary.json, which stays strict JSON: a non-finite number becomes None."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _gradient_theory(ev: Evidence, vanish: bool) -> tuple[str, dict]:
    """What mean-field theory says about a vanishing (or exploding) gradient, as a sentence to append,
    and the numbers: chi_1 multiplies the back-propagated gradient's squared norm once per hidden
    layer (Poole et al. 2016; Schoenholz et al. 2017), so L of them multiply it by chi_1^L."""
    t = ev.context.theory or {}
    chi, hidden = t.get("chi1"), ev.n_layers - 1
    if chi is None or hidden < 1:
        return "", {}
    total = chi ** hidden
    values = {"chi1": chi, "predicted_grad_sq_factor": total}
    phase = "ordered" if chi < 1 else "chaotic" if chi > 1 else "critical"
    if (vanish and chi < 1 and total < 0.1) or (not vanish and chi > 1 and total > 10):
        xi = t.get("depth_scale")
        scale = f", depth scale {_fmt(abs(xi))} layers" if xi is not None else ""
        return (f" Mean-field theory predicts it: chi_1 = {chi:.2f} ({phase} phase{scale}), so each layer multiplies the "
                f"back-propagated gradient's squared norm by {chi:.2f}; {hidden} layers give {total:.1e} (a norm ratio of "
                f"{math.sqrt(total):.1e})."), values
    return (f" Mean-field theory does not predict it at init (chi_1 = {chi:.2f}, {phase} phase; {hidden} layers give "
            f"{total:.1e}): the cause lies elsewhere."), values


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
    big = [l for l in range(grad.shape[1]) if top[l] > th["exploding_norm"]]
    layers = sorted(set(grown) | set(big))
    if not layers:
        return None
    worst = max(layers, key=lambda l: top[l])
    step = int(steps[int(np.argmax(grad[:, worst]))])
    cited, numbers = _gradient_theory(ev, vanish=False)
    return Finding(
        "exploding",
        f"Gradient norms explode: layer {worst}'s grew to {_fmt(top[worst])} at step {step} "
        f"({_fmt(growth[worst])}x its first value; thresholds: growth "
        f"{_fmt(th['exploding_growth'])}x, norm {_fmt(th['exploding_norm'])}).{cited}",
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
    typical_ratio = _nanmedian(ratio)  # NaN when no step has a moving output layer
    if typical_ratio < th["vanishing_ratio"]:
        median = _nanmedian(early, axis=0)
        layers = [l for l in range(len(median)) if median[l] < th["vanishing_ratio"] * median[last]]
        step = int(ratio_steps[ratio < th["vanishing_ratio"]][0])
        cited, numbers = _gradient_theory(ev, vanish=True)
        return Finding(
            "vanishing",
            f"Gradients vanish towards the input: layer 0's weight-gradient norm is {_fmt(typical_ratio)}x "
            f"the output layer's ({_fmt(median[0])} vs {_fmt(median[last])}, medians over the first "
            f"{th['window']} steps; threshold {_fmt(th['vanishing_ratio'])}x).{cited}",
            step=step, layers=layers,
            values={"first_to_last_ratio": typical_ratio, "first_layer_norm": float(median[0]),
                    "last_layer_norm": float(median[last]), **numbers},
        )
    early_loss = _nanmean(ev.loss_values[ev.loss_steps < th["window"]])
    if not early_loss > th["high_loss"] * ev.ln_c:
        return None  # the loss is falling: whatever the norms are, it trains
    hidden, shrink = ev.hidden_std(), ev.signal_shrink()
    typical = _nanmedian(_fmax(early, axis=1))  # the largest layer's norm, median over the early steps
    values = {"largest_grad_norm": typical, "first_hidden_std": float(hidden[0]),
              "last_hidden_std": float(hidden[-1]), "signal_ratio": shrink}
    signal = (f"the signal shrinks from std {_fmt(hidden[0])} after layer 0 to {_fmt(hidden[-1])} "
              f"after layer {len(hidden) - 1}")
    if shrink < th["vanishing_ratio"]:
        # He et al. 2015, Sec. 2.2: each layer scales the forward signal (and the backward one) by a
        # constant factor, so depth turns a factor below 1 into nothing.
        return Finding(
            "vanishing",
            f"The signal vanishes on its way through the layers: {signal} ({_fmt(shrink)}x; threshold "
            f"{_fmt(th['vanishing_ratio'])}x), so the output barely depends on the input and the loss stays near "
            f"{_fmt(early_loss)}.{_signal_theory(ev)}",
            step=int(early_steps[0]), layers=list(range(ev.n_layers)), values=values)
    # Exactly zero gradients are not vanishing ones: nothing flows at all (see `stuck`).
    if th["zero_grad"] < typical < th["vanishing_norm"]:
        return Finding(
            "vanishing",
            f"Gradients vanish in every layer: the largest weight-gradient norm is {_fmt(typical)} (median over the "
            f"first {th['window']} steps; threshold {_fmt(th['vanishing_norm'])}) while the loss stays near "
            f"{_fmt(early_loss)}; {signal}.",
            step=int(early_steps[0]), layers=list(range(ev.n_layers)), values=values)
    return None


def _signal_theory(ev: Evidence) -> str:
    """The mean-field length map's prediction of the forward signal, when it foresees the shrink."""
    predicted = (ev.context.theory or {}).get("predicted_preact_std") or []
    if len(predicted) < 3 or not predicted[0]:
        return ""
    first, last = predicted[0], predicted[-2]  # the first and the last hidden layer's pre-activations
    if last / first >= 0.1:
        return ""
    q_star = ev.context.theory.get("q_star")
    toward = f" (fixed point q* = {_fmt(q_star)})" if q_star is not None else ""
    return (f" Mean-field theory predicts it from the init alone: pre-activation std {_fmt(first)} at layer 0, "
            f"{_fmt(last)} at layer {len(predicted) - 2} ({_fmt(last / first)}x){toward}.")


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
    return (int(steps[0]), steps) if _fmax(after) - _fmin(after) <= th["flat_tol"] else None


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
    values = {"loss": level, "window": th["window"], "max_grad_norm": float(_fmax(top[np.isin(grad_steps, steps)]))}
    at_chance = abs(level - ev.ln_c) < 1e-3
    where = f"ln {ev.context.num_classes} = {ev.ln_c:.6f}, the loss of a uniform prediction," if at_chance else _fmt(level)
    dead = ev.wide("dead_fraction")
    out = ev.n_layers - 1
    if ev.context.output_activation == "relu" and (dead.loc[steps, out] == 1).all():
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
    # Only a full window stops a run: a stretch of zero gradients early on can still end (the
    # founding net meets a positive logit now and then during its first epoch).
    return stuck(Evidence(layers, pd.concat([curves, now]), context), thresholds, absorbing=False)


def stuck_check_due(stop_on: list, step: int, window: int) -> bool:
    """Whether an early-stop check for `stuck` runs after `step` steps: every `window` steps."""
    return "stuck" in stop_on and step >= window and step % window == 0


def symmetric(ev: Evidence, th: dict) -> Optional[Finding]:
    """A constant init: the units of a hidden layer start identical, so they stay identical."""
    layers = ev.context.symmetric_layers
    if not layers:
        return None
    return Finding(
        "symmetric",
        f"Symmetric init: every unit of hidden layer(s) {layers} starts identical (equal weight rows and biases, "
        f"equal columns in the next layer), so all of a layer's units get the same gradient and stay identical: "
        f"each layer acts as a single unit ({_ends(ev)}). Break the symmetry with a random init.",
        step=0, layers=list(layers), values={"test_accuracy": ev.final("test_accuracy")})


def init_too_large(ev: Evidence, th: dict) -> Optional[Finding]:
    """A first loss far above ln C, or huge first gradient norms: the init's scale is too large."""
    if not len(ev.loss_values):
        return None
    first_loss = float(ev.loss_values[0])
    _, grad = ev.values("weight_grad_norm")
    first_grad = float(_fmax(grad[0])) if grad.size else math.nan
    high_loss = first_loss >= th["init_loss_ratio"] * ev.ln_c
    high_grad = first_grad > th["init_grad_norm"]
    if not (high_loss or high_grad):
        return None
    parts = []
    if high_loss:
        parts.append(f"the first batch loss is {_fmt(first_loss)}, {_fmt(first_loss / ev.ln_c)}x ln "
                     f"{ev.context.num_classes} = {ev.ln_c:.3f} (a fresh net should start near it; threshold "
                     f"{_fmt(th['init_loss_ratio'])}x)")
    if high_grad:
        parts.append(f"the first weight-gradient norms reach {_fmt(first_grad)} (threshold {_fmt(th['init_grad_norm'])})")
    return Finding("init_too_large", "The init is too large: " + " and ".join(parts) + f"; {_ends(ev)}.",
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
        f"Updates too small: the median update ratio ||dW||/||W|| is {_fmt(ratio)} (the usual band is around 1e-3; "
        f"threshold {_fmt(th['small_update_ratio'])}) and the loss fell only {fell:.1%} ({_fmt(first)} -> "
        f"{_fmt(last)}): the learning rate ({_fmt(lr)}) is likely too small for this init.",
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
            else f"the loss fell only {fell:.1%} ({_fmt(first)} -> {_fmt(last)})")
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
        return (f"the likeliest cause: dead units (up to {_fmax(dead_hidden):.0%} of a hidden layer's units never "
                f"activate on the test set)")
    shrink = ev.signal_shrink()
    if shrink < th["weak_signal"]:
        return (f"the likeliest cause: a vanishing signal (the activations' std shrinks {_fmt(shrink)}x from the first "
                f"to the last hidden layer at the start; a depth-preserving init such as kaiming_normal keeps it ~1)")
    _, grad = ev.values("weight_grad_norm")
    if grad.size and grad.shape[1] > 1:
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 is NaN and skipped, as in pandas
            ratio = _nanmedian(grad[:, 0] / grad[:, -1])
        if ratio < th["weak_signal"]:
            return (f"the likeliest cause: vanishing gradients (layer 0's weight-gradient norm is {_fmt(ratio)}x the "
                    f"output layer's)")
    update = _median_update_ratio(ev)
    if update < th["small_update_ratio"] * 10:
        return (f"the likeliest cause: updates too small (median update ratio {_fmt(update)}, against ~1e-3 usually): "
                f"raise the learning rate ({_fmt(ev.final('lr'))})")
    return (f"no single cause stands out in the records (signal ratio {_fmt(shrink)}, median update ratio "
            f"{_fmt(update)}): train longer or try another learning rate or init")


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
    top = _fmax(sat, axis=0)
    worst = max(layers, key=lambda l: top[l])
    return Finding(
        "saturation",
        f"Saturated {ev.context.activation}: up to {top[worst]:.0%} of layer {worst}'s outputs sit in the "
        f"flat region (from step {step}; threshold {th['saturation']:.0%}), where almost no gradient passes.",
        step=step, layers=layers, values={"max_saturated_fraction": float(top[worst])},
    )


# Most fundamental first: the label is the first of these that fires.
# `not_learning` is the catch-all: a run that did not learn is never `healthy`, even when no
# mechanism rule can say why.
RULES: tuple[Callable[[Evidence, dict], Optional[Finding]], ...] = (
    failed, diverged, exploding, vanishing, stuck, symmetric, init_too_large, updates_too_small, dead_units,
    saturation, not_learning,
)


def diagnose(layers: pd.DataFrame, curves: pd.DataFrame, context: Context, thresholds: dict) -> dict:
    """The verdict for one run: {'label': ..., 'findings': [...]} (plain data, for summary.json)."""
    ev = Evidence(layers, curves, context)
    # With no statistics recorded, only the run's status and its losses can speak.
    rules = RULES if len(layers) else (failed, diverged, symmetric, not_learning)
    findings = [f for f in (rule(ev, thresholds) for rule in rules) if f is not None]
    label = findings[0].kind if findings else "healthy"
    return {"label": label, "findings": [_strict(asdict(f)) for f in findings]}


def describe(diagnosis: dict) -> list[str]:
    """Lines to print at the end of a run."""
    lines = [f"diagnosis: {diagnosis['label']}"]
    lines += [f"  - {f['kind']}: {f['message']}" for f in diagnosis["findings"]]
    return lines
