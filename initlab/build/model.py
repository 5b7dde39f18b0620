"""The MLP that initlab studies. It builds its layers and never initializes them (see init.py)."""

from __future__ import annotations

from typing import Annotated, Optional

import torch
from torch import nn

from initlab.activations import ACTIVATIONS, NAMES
from initlab.build.param import Scales
from initlab.config.schema import AT_LEAST_ONE, NON_NEGATIVE, one_of
from initlab.config.targets import resolve


def activation_module(name: Optional[str], negative_slope: float = 0.01) -> nn.Module:
    """The nn.Module for an activation name of the registry (initlab/activations.py; None = identity)."""
    module = resolve(ACTIVATIONS[name or "identity"].module)
    return module(negative_slope) if module is nn.LeakyReLU else module()


class Tap(tuple):
    """A layer's (pre-, post-activation) as the forward pass made them, and `grad`: dL/d(pre) once
    backward() has run (None before, or when nothing needs a gradient)."""

    def __new__(cls, pre: torch.Tensor, post: torch.Tensor) -> "Tap":
        tapped = super().__new__(cls, (pre, post))
        tapped._grad = [None]  # filled by the hook on `pre`; the tap holds the hook's cell, not the reverse
        return tapped

    @property
    def grad(self) -> Optional[torch.Tensor]:
        return self._grad[0]


def tap(taps: Optional[list], pre: torch.Tensor, post: torch.Tensor) -> None:
    """Keep a layer's (pre-, post-activation) for the probes, with dL/d(pre) once backward() has run.

    A hook keeps the gradient autograd passes through `pre` as it is. retain_grad() would keep a
    copy (a kernel per layer on a GPU at each record step); this one is read and dropped before
    the next backward, and autograd does not write into it again.
    """
    if taps is None:
        return
    tapped = Tap(pre, post)
    if pre.requires_grad:
        cell = tapped._grad

        def keep(grad: torch.Tensor) -> None:
            cell[0] = grad

        pre.register_hook(keep)
    taps.append(tapped)


class MLP(nn.Module):
    """in_features -> `depth` hidden layers of `width` units -> num_classes.

    `activation` follows every hidden layer; `output_activation` (default none) follows the
    output layer. The founding failure puts a ReLU there: every logit <= 0 becomes exactly 0,
    and no gradient flows back through it.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        depth: Annotated[int, AT_LEAST_ONE] = 2,
        width: Annotated[int, AT_LEAST_ONE] = 200,
        activation: Annotated[str, one_of(*NAMES)] = "relu",
        output_activation: Annotated[Optional[str], one_of(*NAMES)] = None,
        negative_slope: Annotated[float, NON_NEGATIVE] = 0.01,
    ) -> None:
        super().__init__()
        sizes = [in_features] + [width] * depth + [num_classes]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        acts = [activation] * depth + [output_activation]
        self.activation_names = [a or "identity" for a in acts]  # per linear layer, for the probes
        self.activations = nn.ModuleList(activation_module(a, negative_slope) for a in acts)
        # Each layer's parameterization factors (build/param.py), its forward multiplier among them; the standard
        # parameterization's until train/loop.py build_model sets the run's
        self.scales = [Scales()] * len(self.linears)

    def effective_weights(self) -> list[torch.Tensor]:
        """Each layer's weight times its multiplier: what multiplies the layer's input (theory, Jacobian)."""
        return [l.weight if s.multiplier == 1.0 else l.weight * s.multiplier for l, s in zip(self.linears, self.scales)]

    def forward(self, x: torch.Tensor, taps: Optional[list] = None) -> torch.Tensor:
        """The network's output; with `taps`, also each layer's (pre-, post-activation) (see `tap`)."""
        for linear, act, s in zip(self.linears, self.activations, self.scales):
            pre = linear(x if s.multiplier == 1.0 else x * s.multiplier)
            x = act(pre)
            tap(taps, pre, x)
        return x
