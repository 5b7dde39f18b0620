"""A member-stacked view of a model's layers (Layers, one member for an ordinary run), the pass
that evaluates it on the test set, and the per-unit counts of dead and saturated units."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from initlab.activations import ACTIVATIONS
from initlab.train.gpu import side_streams

SATURATED = {name: a.saturated for name, a in ACTIVATIONS.items() if a.saturated is not None}  # initlab/activations.py


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


def norms_per_member(tensors: list[Optional[torch.Tensor]], like: torch.Tensor) -> torch.Tensor:
    """(M, layers) L2 norms over every dim but the first; a missing gradient counts as zero."""
    return member_norms([tensors], like)[:, :, 0]
