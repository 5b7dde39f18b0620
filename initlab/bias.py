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
from typing import Annotated, Optional

import torch
from torch import nn

from initlab.schema import NON_NEGATIVE


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


# The second moment every bias of a layer is drawn with, for the schemes where it is one number.
_SECOND_MOMENT = {
    "initlab.bias.zeros_": lambda c: 0.0,
    "initlab.bias.constant_": lambda c: float(c["value"]) ** 2,
    "initlab.bias.normal_": lambda c: float(c.get("mean", 0.0)) ** 2 + float(c["std"]) ** 2,
    "torch.nn.init.zeros_": lambda c: 0.0,
}


def second_moment(bias_cfg: dict) -> Optional[float]:
    """sigma_b^2 = E[b^2] of a bias config (the mean-field papers' sigma_b^2), or None when it is not
    one known number (torch_default's depends on each layer's fan_in; a user's scheme is unknown)."""
    known = _SECOND_MOMENT.get(bias_cfg.get("_target_"))
    return known(bias_cfg) if known is not None else None
