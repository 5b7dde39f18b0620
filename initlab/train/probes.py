"""Per-layer statistics recorded during training: the numbers that expose vanishing, exploding
and dead layers.

Probes read a `Layers` view in which every tensor has a leading *member* dimension: one member
for an ordinary run (its parameters with a dimension of 1 added, no copy), many for a stacked
group of the vectorized launcher. So one probe serves both and their numbers agree.

A probe says which metrics it records and when: ``before_step`` sees the model right after
``backward()`` (gradients of this batch, the weights that produced them, the layers'
activations), ``after_step`` sees it right after the optimizer step. Each returns a
(members, layers, metrics) tensor on the training device, or None when its values come from
the other hook. Nothing here syncs with the device or plots. Layer 0 is the first linear layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np
import pandas as pd
import torch

from initlab.train.gpu import side_streams
from initlab.store.records import layers_frame, str_column

# Where a bounded activation is flat: its derivative there is below ~0.02 (tanh) or ~0.01
# (sigmoid) of its maximum, so almost no gradient passes (Glorot & Bengio 2010, Sec. 3).
SATURATED = {
    "tanh": lambda h: h.abs() > 0.99,
    "sigmoid": lambda h: (h < 0.01) | (h > 0.99),
}


def saturated_count(name: str, post: torch.Tensor, start_dim: int = 0) -> torch.Tensor:
    """How many outputs sit in the flat region, summed over the dims from `start_dim` on.

    Activations that cannot saturate cost no pass over the tensor.
    """
    rule = SATURATED.get(name)
    if rule is None:
        return post.new_zeros(post.shape[:start_dim])
    return rule(post).flatten(start_dim).sum(-1)


def largest_outputs(post: torch.Tensor) -> torch.Tensor:
    """Each unit's largest |output| over the samples (the second-last dim), in one reduction: 0
    exactly for a unit whose output is zero for every sample (NaN and inf are not 0)."""
    return torch.linalg.vector_norm(post, ord=float("inf"), dim=-2)


def dead_units(post: torch.Tensor) -> torch.Tensor:
    """Boolean mask of units whose output is exactly zero for every sample (the second-last dim)."""
    return largest_outputs(post) == 0


class EvaluationPass:
    """Per-layer dead and saturated counts over a whole evaluation pass, fed chunk by chunk.

    Taps have a leading member dimension (one member for an ordinary run), so the same counts
    serve train.evaluate and the vectorized launcher's evaluate_members.
    """

    def __init__(self, activation_names: list[str]) -> None:
        self.names = activation_names
        self.alive: list[torch.Tensor] = []  # per layer (M, units): did the unit ever output non-zero?
        self.saturated: list[torch.Tensor] = []  # per layer (M,): outputs in the flat region
        self.samples = 0

    def add(self, taps: list) -> None:
        for i, ((_, post), name) in enumerate(zip(taps, self.names)):
            live, sat = ~dead_units(post), saturated_count(name, post, 1)
            if i == len(self.alive):
                self.alive.append(live), self.saturated.append(sat)
            else:
                self.alive[i] |= live
                self.saturated[i] += sat
        self.samples += taps[0][1].shape[1]

    def dead_fraction(self) -> list[list[float]]:
        """Per member, per layer: the fraction of units that output 0 for every sample."""
        per_layer = [(~a).float().mean(1).tolist() for a in self.alive]
        return [list(member) for member in zip(*per_layer)]

    def saturated_fraction(self) -> list[list[float]]:
        per_layer = [(c / (self.samples * a.shape[1])).tolist() for c, a in zip(self.saturated, self.alive)]
        return [list(member) for member in zip(*per_layer)]

    def dead_outputs(self) -> list[list[int]]:
        """Per member: the classes whose output was 0 for every sample."""
        return [(~member).nonzero().flatten().tolist() for member in self.alive[-1]]


@dataclass
class Layers:
    """What the probes see at one step, per linear layer; every tensor has a leading member dim."""

    weights: list[torch.Tensor]  # (M, out, in)
    biases: list[torch.Tensor]  # (M, out)
    weight_grads: list[Optional[torch.Tensor]]  # like weights; None before any backward
    bias_grads: list[Optional[torch.Tensor]]
    taps: list[tuple[torch.Tensor, torch.Tensor]]  # (pre, post) activations, (M, batch, out)
    pre_grads: list[Optional[torch.Tensor]]  # dL/d(pre), like the pre-activations
    activation_names: list[str]

    def __post_init__(self) -> None:
        self._norms: Optional[torch.Tensor] = None
        # While a CUDA graph is captured: where independent parts may run side by side (side_streams)
        self.fork: Optional[side_streams.Fork] = None

    @classmethod
    def of_model(cls, model, taps: list = ()) -> "Layers":
        """The view of an ordinary MLP: its tensors as a stack of one member (views, no copies)."""
        def one(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if t is None else t.detach()[None]
        linears = model.linears
        return cls([one(l.weight) for l in linears], [one(l.bias) for l in linears],
                   [one(l.weight.grad) for l in linears], [one(l.bias.grad) for l in linears],
                   [(one(pre), one(post)) for pre, post in taps], [one(t.grad) for t in taps],
                   model.activation_names)

    NORMED = ("weight_grads", "bias_grads", "pre_grads", "weights")

    def norms(self) -> torch.Tensor:
        """(M, layers, 4): the L2 norms of each layer's weight gradient, bias gradient, dL/d(pre) and
        weight matrix (NORMED), per member; computed once for every probe that reads them."""
        if self._norms is None:
            self._norms = member_norms([getattr(self, name) for name in self.NORMED], self.weights[0])
        return self._norms


def member_norms(groups: list[list[Optional[torch.Tensor]]], like: torch.Tensor) -> torch.Tensor:
    """(M, layers, groups): the L2 norm over every dim but the first of each tensor of each group
    (a list per layer, as long as the others); a missing tensor (no gradient yet) counts as zero.

    One member (an ordinary run) takes torch's multi-tensor norm, one kernel launch for all of
    them on a GPU instead of one each (on the CPU it is a loop of the same vector norms); a
    stacked group, one batched norm per tensor. The result is one tensor made by one stack.
    """
    m, layers = like.shape[0], len(groups[0])
    flat = [t for group in groups for t in group]
    present = [t for t in flat if t is not None]
    if m == 1 and present:
        found = iter(torch._foreach_norm(present))
        norms = [next(found) if t is not None else like.new_zeros(()) for t in flat]
        stacked = torch.stack(norms)
    else:
        stacked = torch.stack([torch.linalg.vector_norm(t.flatten(1), dim=1) if t is not None else like.new_zeros(m)
                               for t in flat], 1)
    return stacked.view(m, len(groups), layers).transpose(1, 2)


def _member_norms(tensors: list[Optional[torch.Tensor]], like: torch.Tensor) -> torch.Tensor:
    """(M, layers) L2 norms over every dim but the first; a missing gradient counts as zero."""
    return member_norms([tensors], like)[:, :, 0]


class Probe:
    """One group of per-layer metrics."""

    metrics: ClassVar[tuple[str, ...]] = ()

    def before_step(self, layers: Layers) -> Optional[torch.Tensor]:
        return None

    def after_step(self, layers: Layers) -> Optional[torch.Tensor]:
        return None


class GradNorms(Probe):
    """L2 norms of each layer's weight and bias gradients for this batch."""

    metrics = ("weight_grad_norm", "bias_grad_norm")

    def before_step(self, layers):
        return layers.norms()[:, :, 0:2]


class BackpropGrads(Probe):
    """L2 norm of dL/dz, the gradient reaching each layer's pre-activation for this batch.

    This is the "back-propagated gradient" of Glorot & Bengio 2010 (Sec. 4.2.2): it can shrink
    towards the input even when the weight gradients do not.
    """

    metrics = ("backprop_grad_norm",)

    def before_step(self, layers):
        return layers.norms()[:, :, 2:3]


class WeightNorms(Probe):
    """L2 norm of each layer's weight matrix (the weights that produced this batch's gradient)."""

    metrics = ("weight_norm",)

    def before_step(self, layers):
        return layers.norms()[:, :, 3:4]


class UpdateRatio(Probe):
    """||W_after - W_before|| / ||W_before|| for this optimizer step (~1e-3 is the usual rule of thumb)."""

    metrics = ("update_ratio",)

    def __init__(self) -> None:
        self._before: list[torch.Tensor] = []  # the weights before the step, in buffers kept across steps
        self._before_norms: Optional[torch.Tensor] = None  # their norms, (M, layers)

    def before_step(self, layers):
        weights = [w.detach() for w in layers.weights]
        if [b.shape for b in self._before] != [w.shape for w in weights]:
            self._before = [torch.empty_like(w) for w in weights]
        torch._foreach_copy_(self._before, weights)  # one launch on a GPU
        self._before_norms = layers.norms()[:, :, 3]  # the same weights' norms: WeightNorms' values
        return None

    def after_step(self, layers):
        after = [w.detach() for w in layers.weights]
        change = _member_norms(torch._foreach_sub(after, self._before), after[0])
        # A zero weight matrix (init=zeros) has no scale: the ratio is then inf, or nan if
        # nothing changed either. Both are recorded as they are.
        return (change / self._before_norms)[:, :, None]


class Activations(Probe):
    """Each layer's output over the batch: mean, std, pre-activation std, dead and saturated fractions.

    A unit is dead for this batch when its output is exactly zero for every sample (a ReLU whose
    input is never positive). For the output layer with an output ReLU, a dead unit is a class
    logit that is always zero: a class whose logit gets no gradient. The saturated fraction is
    the share of outputs in the flat region of tanh or sigmoid (0 for other activations).

    On a GPU (`together`, by default where the taps are CUDA tensors) layers in a row with taps
    of one shape and one activation (the hidden layers of an MLP) are taken together: their
    outputs and pre-activations stacked into one tensor, one std_mean for all (the dead-unit
    reductions stay per layer and run beside it, below). There each reduction is a kernel of a
    few microseconds whatever its size, and a record step's six Welford passes for the founding
    net were the largest part of what recording cost on an H200
    (benchmarks/profile_record_step.py); together, two. On the CPU the stacking copy costs more
    than it saves (0.76 against 0.52 ms a record step of one run), so there each layer is reduced
    on its own. Both give the same values (bit for bit on the CPU). While a CUDA graph is
    captured, each run's moments and its dead and saturated counts run side by side on streams of
    their own (side_streams): a record step then cost the H200 41 us of device time instead of
    87-92 (benchmarks/host_device_split.py).
    """

    metrics = ("act_mean", "act_std", "preact_std", "dead_fraction", "saturated_fraction")

    def __init__(self, together: Optional[bool] = None) -> None:
        self.together = together

    def before_step(self, layers):
        together = layers.taps[0][1].is_cuda if self.together is None else self.together
        return self._together(layers) if together else self._each(layers)

    def _each(self, layers):
        values, zero = [], None
        for (pre, post), name in zip(layers.taps, layers.activation_names):
            flat_post = post.flatten(1)
            std, mean = torch.std_mean(flat_post, dim=1)
            dead = torch.mean(dead_units(post), dim=-1, dtype=std.dtype)
            rule = SATURATED.get(name)
            if rule is not None:
                sat = torch.mean(rule(flat_post), dim=1, dtype=std.dtype)
            else:  # cannot saturate: one zero serves every such layer
                sat = zero = std.new_zeros(std.shape) if zero is None else zero
            values += [mean, std, pre.flatten(1).std(1), dead, sat]
        m = layers.weights[0].shape[0]
        return torch.stack(values, 1).view(m, len(layers.taps), len(self.metrics))

    def _together(self, layers):
        # Every value of every run goes into one (M, metrics, layers) tensor made by one cat at the
        # end (the recorder's cat takes its transposed view as it is), and a unit is dead where
        # torch.eq writes 1.0 into a float tensor: on a GPU that compare casts as it writes, where
        # mean(bool, dtype=float) would first copy the booleans into floats (a kernel more per run).
        # While a CUDA graph is captured (layers.fork) each run's moments and its dead and saturated
        # counts are parts of their own, on side streams: the graph runs them side by side.
        fork = layers.fork
        parts: list[list[torch.Tensor]] = [[] for _ in self.metrics]  # per metric, (M, 1, layers of a run)
        zero = None
        for r, (start, end) in enumerate(_runs(layers.taps, layers.activation_names)):
            k, taps = end - start, layers.taps[start:end]
            posts = [post for _, post in taps]
            if fork is not None:
                fork.reads(*posts, *(pre for pre, _ in taps))
            with side_streams.on(fork, 2 * r):
                both = torch.stack(posts + [pre for pre, _ in taps], 1)  # (M, 2k, batch, out)
                std, mean = torch.std_mean(both.flatten(2), dim=2)  # (M, 2k): the outputs', then the pre-activations'
            with side_streams.on(fork, 2 * r + 1):
                # dead_units, layer by layer (not of `both`: this part does not wait for the stack)
                largest = torch.stack([largest_outputs(post) for post in posts], 1)  # (M, k, out)
                dead = torch.mean(torch.eq(largest, 0, out=torch.empty_like(largest)), dim=-1)  # (M, k)
                rule = SATURATED.get(layers.activation_names[start])
                sat = None if rule is None else torch.stack([torch.mean(rule(p.flatten(1)), dim=1, dtype=std.dtype)
                                                             for p in posts], 1)
            if fork is not None:
                fork.hand_back(std, mean, dead, *([] if sat is None else [sat]))
            if sat is None:  # cannot saturate: one zero serves every such run
                zero = std.new_zeros(()) if zero is None else zero
                sat = zero.expand(dead.shape)
            for part, value in zip(parts, (mean[:, :k], std[:, :k], std[:, k:], dead, sat)):
                part.append(value[:, None])
        if fork is not None:
            fork.join()
        return torch.cat([v for part in parts for v in part], 2).view(-1, len(self.metrics), len(layers.taps)).transpose(1, 2)


def _runs(taps: list, names: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each run of consecutive layers whose taps share a shape and an activation."""
    runs, start = [], 0
    for i in range(1, len(taps) + 1):
        if i == len(taps) or taps[i][1].shape != taps[start][1].shape or names[i] != names[start]:
            runs.append((start, i))
            start = i
    return runs


DEFAULT_PROBES = (GradNorms, BackpropGrads, WeightNorms, UpdateRatio, Activations)


class Recorder:
    """Runs the probes at log steps and keeps their values, per member, until a table is asked for."""

    def __init__(self, probes=DEFAULT_PROBES) -> None:
        self.probes = [p() for p in probes]
        self.metrics = [m for p in self.probes for m in p.metrics]
        self._values: list[torch.Tensor] = []  # each (members, layers, metrics)
        self._index: list[tuple[int, int]] = []
        self._pending: list[Optional[torch.Tensor]] = []
        self._host: Optional[np.ndarray] = None  # every value on the CPU, (steps, members, layers, metrics)
        self._host_index: Optional[np.ndarray] = None  # _index as an array, (steps, 2), made with _host

    def before_step(self, layers: Layers) -> None:
        with torch.no_grad():
            # While a CUDA graph is captured, parts of the probes may run side by side from here
            # (side_streams): the fork marks the stream where backward() has just finished.
            layers.fork = side_streams.fork(layers.weights[0])
            self._pending = [p.before_step(layers) for p in self.probes]

    def after_values(self, layers: Layers) -> torch.Tensor:
        """This log step's values, (members, layers, metrics): before_step's and the after_step probes'."""
        with torch.no_grad():
            parts = [v if v is not None else p.after_step(layers) for p, v in zip(self.probes, self._pending)]
            return torch.cat(parts, 2).float()

    def append(self, values: torch.Tensor, step: int, epoch: int) -> None:
        """Keep a log step's values (after_values; a tensor no later step writes into)."""
        self._values.append(values)
        self._index.append((step, epoch))
        self._host = None

    def truncate(self, last_step: int) -> None:
        """Forget the log steps after `last_step` (a loop that rolled back to it: finite_checks)."""
        while self._index and self._index[-1][0] > last_step:
            self._index.pop()
            self._values.pop()
        self._host = None

    def state(self) -> tuple:
        """What before_step left for after_step (its values, the probes' own attributes): a CUDA
        graph's capture keeps it, as those tensors are the graph's outputs (graphs.py)."""
        return list(self._pending), [dict(vars(p)) for p in self.probes]

    def restore(self, state: tuple) -> None:
        pending, probes = state
        self._pending = list(pending)
        for probe, attributes in zip(self.probes, probes):
            vars(probe).update(attributes)

    def count(self) -> int:
        """How many log steps have been recorded."""
        return len(self._values)

    def mean_since(self, first: int, metric: str, member: int = 0) -> Optional[torch.Tensor]:
        """Per-layer mean of `metric` over the log steps recorded from index `first` on (on the CPU)."""
        if first >= len(self._values):
            return None
        column = self.metrics.index(metric)
        return torch.stack([v[member, :, column] for v in self._values[first:]]).mean(0).cpu()

    def member_values(self, member: int = 0, last_step: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """One member's values up to `last_step`, (steps, layers, metrics) in float64, and each row's
        (step, epoch): what `table` makes a table of."""
        if not self._values:
            return np.empty((0, 0, len(self.metrics))), np.empty((0, 2), dtype=np.int64)
        if self._host is None:  # one copy from the device serves every member's table
            self._host = torch.stack(self._values).cpu().numpy().astype(np.float64)
            self._host_index = np.asarray(self._index, dtype=np.int64)
        # log steps are recorded in order: those up to last_step are the first n
        n = len(self._index) if last_step is None else int(np.searchsorted(self._host_index[:, 0], last_step, "right"))
        if not n:
            return np.empty((0, 0, len(self.metrics))), np.empty((0, 2), dtype=np.int64)
        return self._host[:n, member], self._host_index[:n]

    def table(self, member: int = 0, last_step: Optional[int] = None) -> pd.DataFrame:
        """One member's records as a tidy table (step, epoch, layer, metric, value), up to `last_step`."""
        return table_of(*self.member_values(member, last_step), self.metrics)


def table_of(values: np.ndarray, index: np.ndarray, metrics: list[str]) -> pd.DataFrame:
    """The tidy table (step, epoch, layer, metric, value) of values (steps, layers, metrics) recorded
    at the (step, epoch) rows of `index`."""
    if not len(values):
        return layers_frame()
    n_steps, n_layers, n_metrics = values.shape
    per_step = n_layers * n_metrics
    return pd.DataFrame({
        "step": np.repeat(index[:, 0], per_step),
        "epoch": np.repeat(index[:, 1], per_step),
        "layer": np.tile(np.repeat(np.arange(n_layers, dtype=np.int64), n_metrics), n_steps),
        "metric": str_column(metrics, np.tile(np.arange(n_metrics, dtype=np.int32), n_steps * n_layers)),
        "value": values.reshape(-1),
    })
