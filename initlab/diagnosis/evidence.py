"""What diagnosis rules read: a run's tables as arrays (Evidence), what else they know of the run
(Context), what a rule returns (Finding), and the NaN-aware reductions they share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

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
            self._arrays["grad_max"] = steps, fmax(both, axis=1)
        return self._arrays["grad_max"]

    def final(self, metric: str) -> float:
        """The last value of an epoch metric in the curves (test_accuracy, ...), NaN when there is none."""
        return float(self._finals.get(metric, math.nan))

    def loss_fall(self, th: dict) -> tuple[float, float, float]:
        """(first, last, fraction fallen): the mean batch loss over the first and the last
        `progress_steps` steps, and how much of the first the run shed by the end."""
        n = max(1, min(th["progress_steps"], len(self.loss_values) // 2))
        first, last = nanmean(self.loss_values[:n]), nanmean(self.loss_values[-n:])
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
def fmax(a: np.ndarray, axis=None):
    if a.size == 0:
        return np.full(a.shape[1 - axis], np.nan) if axis is not None and a.ndim == 2 else math.nan
    return np.fmax.reduce(a, axis=axis)


def fmin(a: np.ndarray) -> float:
    return float(np.fmin.reduce(a)) if a.size else math.nan


def nanmean(a: np.ndarray) -> float:
    a = a[~np.isnan(a)]
    return float(a.mean()) if len(a) else math.nan


def nanmedian(a: np.ndarray, axis=None):
    if axis is None:
        a = a[~np.isnan(a)]
        return float(np.median(a)) if len(a) else math.nan
    return np.array([nanmedian(column) for column in np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])])


def fmt(x: float) -> str:
    return f"{x:.3g}"


def ends(ev: Evidence) -> str:
    """How the run ended, for a message: its final test accuracy when it has one."""
    acc = ev.final("test_accuracy")
    return f"the run ends at {acc:.2%} test accuracy" if math.isfinite(acc) else f"the run ended {ev.context.status}"


def strict(value):
    """Plain data for summary.json, which stays strict JSON: a non-finite number becomes None."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value
