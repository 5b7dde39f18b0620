"""Bias-initialization schemes, one per option in ``conf/bias/`` (the `bias` config group).

A bias scheme is any function that takes a layer's bias vector as its only positional
argument and its settings as keywords; a parameter named ``weight`` receives the layer's
weight (for its fans). Like weight schemes (init.py), its signature is its schema.

With ``init=variance_scaling init.scale=s bias=normal bias.std=sqrt(v)`` every layer has
sigma_w^2 = s and sigma_b^2 = v, the parameterization of the signal-propagation papers
(Poole et al. 2016; Schoenholz et al. 2017).
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import nn

from initlab.config.schema import NON_NEGATIVE


@torch.no_grad()
def zeros_(bias: torch.Tensor) -> None:
    """Every bias 0 (the default, and the founding example's)."""
    nn.init.zeros_(bias)


@torch.no_grad()
def constant_(bias: torch.Tensor, *, value: float) -> None:
    """Every bias equal to `value` (a small positive value keeps ReLU units alive at the start)."""
    nn.init.constant_(bias, value)


@torch.no_grad()
def normal_(bias: torch.Tensor, *, mean: float = 0.0, std: Annotated[float, NON_NEGATIVE]) -> None:
    """N(mean, std²) per bias: std = sigma_b of the mean-field papers."""
    nn.init.normal_(bias, mean, std)


@torch.no_grad()
def torch_default_(bias: torch.Tensor, weight: torch.Tensor) -> None:
    """What nn.Linear does by itself: U(±1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(weight.shape[1])
    nn.init.uniform_(bias, -bound, bound)

