"""Per-layer statistics recorded during training: the numbers that expose vanishing, exploding
and dead layers.

A probe says which metrics it records and when: ``before_step`` sees the model right after
``backward()`` (gradients of this batch, weights that produced them, the layers' activations),
``after_step`` sees it right after ``optimizer.step()``. Each returns a (layers, metrics) tensor
on the training device, or None when its values come from the other hook. Nothing here syncs
with the device or plots: the Recorder keeps the values on the device and turns them into one
tidy table at the end of an epoch. Layer 0 is the first linear layer; the last is the output.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn

Taps = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (pre-activation, post-activation)


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _norms(tensors: list[Optional[torch.Tensor]], like: torch.Tensor) -> torch.Tensor:
    # A missing gradient (a layer that never got one) counts as zero, not as an error.
    return torch.stack([t.norm() if t is not None else like.new_zeros(()) for t in tensors])


class Probe:
    """One group of per-layer metrics."""

    metrics: ClassVar[tuple[str, ...]] = ()

    def before_step(self, model: nn.Module, taps: Taps) -> Optional[torch.Tensor]:
        return None

    def after_step(self, model: nn.Module) -> Optional[torch.Tensor]:
        return None


class GradNorms(Probe):
    """L2 norms of each layer's weight and bias gradients for this batch."""

    metrics = ("weight_grad_norm", "bias_grad_norm")

    def before_step(self, model, taps):
        layers = _linears(model)
        w = layers[0].weight
        return torch.stack([_norms([l.weight.grad for l in layers], w),
                            _norms([l.bias.grad if l.bias is not None else None for l in layers], w)], 1)


class BackpropGrads(Probe):
    """L2 norm of dL/dz, the gradient reaching each layer's pre-activation for this batch.

    This is the "back-propagated gradient" of Glorot & Bengio 2010 (Sec. 4.2.2): it can shrink
    towards the input even when the weight gradients do not.
    """

    metrics = ("backprop_grad_norm",)

    def before_step(self, model, taps):
        pre = [p for p, _ in taps]
        return _norms([p.grad for p in pre], pre[0])[:, None]


class WeightNorms(Probe):
    """L2 norm of each layer's weight matrix (the weights that produced this batch's gradient)."""

    metrics = ("weight_norm",)

    def before_step(self, model, taps):
        return _norms([l.weight for l in _linears(model)], _linears(model)[0].weight)[:, None]


class UpdateRatio(Probe):
    """||W_after - W_before|| / ||W_before|| for this optimizer step (~1e-3 is the usual rule of thumb)."""

    metrics = ("update_ratio",)

    def before_step(self, model, taps):
        self._before = [l.weight.detach().clone() for l in _linears(model)]
        return None

    def after_step(self, model):
        after = [l.weight.detach() for l in _linears(model)]
        change = _norms([a - b for a, b in zip(after, self._before)], after[0])
        # A zero weight matrix (init=zeros) has no scale: the ratio is then inf, or nan if
        # nothing changed either. Both are recorded as they are.
        return (change / _norms(self._before, after[0]))[:, None]


# Where a bounded activation is flat: its derivative there is below ~0.02 (tanh) or ~0.01
# (sigmoid) of its maximum, so almost no gradient passes (Glorot & Bengio 2010, Sec. 3).
SATURATED = {
    "tanh": lambda h: h.abs() > 0.99,
    "sigmoid": lambda h: (h < 0.01) | (h > 0.99),
}


def saturated(name: str, post: torch.Tensor) -> torch.Tensor:
    """Boolean mask of saturated outputs; all False for activations that do not saturate."""
    rule = SATURATED.get(name)
    return rule(post) if rule else torch.zeros_like(post, dtype=torch.bool)


def dead_units(post: torch.Tensor) -> torch.Tensor:
    """Boolean mask of units whose output is exactly zero for every sample (rows) given."""
    return (post == 0).all(0)


class Activations(Probe):
    """Each layer's output over the batch: mean, std, pre-activation std, dead and saturated fractions.

    A unit is dead for this batch when its output is exactly zero for every sample (a ReLU whose
    input is never positive). For the output layer with an output ReLU, a dead unit is a class
    logit that is always zero: a class whose logit gets no gradient. The saturated fraction is
    the share of outputs in the flat region of tanh or sigmoid (0 for other activations).
    """

    metrics = ("act_mean", "act_std", "preact_std", "dead_fraction", "saturated_fraction")

    def before_step(self, model, taps):
        rows = [torch.stack([post.mean(), post.std(), pre.std(), dead_units(post).float().mean(),
                             saturated(name, post).float().mean()])
                for (pre, post), name in zip(taps, model.activation_names)]
        return torch.stack(rows).detach()


DEFAULT_PROBES = (GradNorms, BackpropGrads, WeightNorms, UpdateRatio, Activations)


class Recorder:
    """Runs the probes at log steps and keeps their values until `table()` is asked for."""

    def __init__(self, probes=DEFAULT_PROBES) -> None:
        self.probes = [p() for p in probes]
        self.metrics = [m for p in self.probes for m in p.metrics]
        self._values: list[torch.Tensor] = []
        self._index: list[tuple[int, int]] = []
        self._pending: list[Optional[torch.Tensor]] = []

    def before_step(self, model: nn.Module, taps: Taps) -> None:
        with torch.no_grad():
            self._pending = [p.before_step(model, taps) for p in self.probes]

    def after_step(self, model: nn.Module, step: int, epoch: int) -> None:
        with torch.no_grad():
            parts = [v if v is not None else p.after_step(model) for p, v in zip(self.probes, self._pending)]
        self._values.append(torch.cat(parts, 1).float())
        self._index.append((step, epoch))

    def count(self) -> int:
        """How many log steps have been recorded."""
        return len(self._values)

    def mean_since(self, first: int, metric: str) -> Optional[torch.Tensor]:
        """Per-layer mean of `metric` over the log steps recorded from index `first` on (on the CPU)."""
        if first >= len(self._values):
            return None
        return torch.stack(self._values[first:])[:, :, self.metrics.index(metric)].mean(0).cpu()

    def table(self) -> pd.DataFrame:
        """Everything recorded so far as one tidy table: step, epoch, layer, metric, value."""
        if not self._values:
            return pd.DataFrame({"step": pd.Series(dtype="int64"), "epoch": pd.Series(dtype="int64"),
                                 "layer": pd.Series(dtype="int64"), "metric": pd.Series(dtype="str"),
                                 "value": pd.Series(dtype="float64")})
        values = torch.stack(self._values).cpu().numpy().astype(np.float64)  # (steps, layers, metrics)
        n_steps, n_layers, n_metrics = values.shape
        index = np.asarray(self._index, dtype=np.int64)
        per_step = n_layers * n_metrics
        return pd.DataFrame({
            "step": np.repeat(index[:, 0], per_step),
            "epoch": np.repeat(index[:, 1], per_step),
            "layer": np.tile(np.repeat(np.arange(n_layers, dtype=np.int64), n_metrics), n_steps),
            "metric": np.tile(np.asarray(self.metrics, dtype=object), n_steps * n_layers),
            "value": values.reshape(-1),
        })
