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

from typing import ClassVar, Optional

import torch

from initlab.train.gpu import side_streams

from initlab.train.layers import SATURATED, Layers, dead_units, largest_outputs, norms_per_member


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
        change = norms_per_member(torch._foreach_sub(after, self._before), after[0])
        # A zero weight matrix (init=zeros) has no scale: the ratio is then inf, or nan if
        # nothing changed either. Both are recorded as they are.
        return (change / self._before_norms)[:, :, None]


class Activations(Probe):
    """Each layer's output over the batch: mean, std, pre-activation std, dead and saturated fractions, and
    the pre-activation's mean absolute value (`preact_l1`: microsoft/mup's coord-check `l1` of a Linear's output).

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
    (benchmarks/results/gpu-h200-2026-11-30.txt); together, two. On the CPU the stacking copy costs more
    than it saves (0.76 against 0.52 ms a record step of one run), so there each layer is reduced
    on its own. Both give the same values (bit for bit on the CPU). While a CUDA graph is
    captured, each run's moments and its dead and saturated counts run side by side on streams of
    their own (side_streams): a record step then cost the H200 41 us of device time instead of
    87-92 (benchmarks/results/gpu-h200-2026-11-30.txt).
    """

    metrics = ("act_mean", "act_std", "preact_std", "dead_fraction", "saturated_fraction", "preact_l1")

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
            flat_pre = pre.flatten(1)
            values += [mean, std, flat_pre.std(1), dead, sat, flat_pre.abs().mean(1)]
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
                l1 = both[:, k:].flatten(2).abs().mean(2)  # (M, k): the pre-activations' mean |value|
            with side_streams.on(fork, 2 * r + 1):
                # dead_units, layer by layer (not of `both`: this part does not wait for the stack)
                largest = torch.stack([largest_outputs(post) for post in posts], 1)  # (M, k, out)
                dead = torch.mean(torch.eq(largest, 0, out=torch.empty_like(largest)), dim=-1)  # (M, k)
                rule = SATURATED.get(layers.activation_names[start])
                sat = None if rule is None else torch.stack([torch.mean(rule(p.flatten(1)), dim=1, dtype=std.dtype)
                                                             for p in posts], 1)
            if fork is not None:
                fork.hand_back(std, mean, l1, dead, *([] if sat is None else [sat]))
            if sat is None:  # cannot saturate: one zero serves every such run
                zero = std.new_zeros(()) if zero is None else zero
                sat = zero.expand(dead.shape)
            for part, value in zip(parts, (mean[:, :k], std[:, :k], std[:, k:], dead, sat, l1)):
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
