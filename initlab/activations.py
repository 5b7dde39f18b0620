"""The activations initlab knows, in one registry: each name's torch module, its weight gain, its
mean-field functions and what "saturated" means for it. Config, model, init, theory and probes
all read it (torch-free: the module is named, made by build/model.py; `saturated` uses only a
tensor's own operators)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
_erf = np.vectorize(math.erf)  # a few hundred quadrature nodes: no need for scipy


def _gelu_cdf(x):
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Activation:
    name: str
    module: str  # the torch.nn class (leaky_relu's takes model.negative_slope)
    # torch.nn.init.calculate_gain's name for it, or None where torch knows none and `gain` is ours
    torch_nonlinearity: Optional[str]
    phi: Callable  # phi(x, negative_slope) on numpy arrays: the mean-field theory's
    dphi: Callable  # its derivative
    saturated: Optional[Callable] = None  # outputs in the flat region (a bool tensor), for bounded activations
    gain: Optional[float] = None


ACTIVATIONS: dict[str, Activation] = {a.name: a for a in (
    Activation("relu", "torch.nn.ReLU", "relu",
               lambda x, s: np.maximum(x, 0.0), lambda x, s: (x > 0).astype(float)),
    Activation("leaky_relu", "torch.nn.LeakyReLU", "leaky_relu",
               lambda x, s: np.where(x > 0, x, s * x), lambda x, s: np.where(x > 0, 1.0, s)),
    # Where a bounded activation is flat: its derivative there is below ~0.02 (tanh) or ~0.01
    # (sigmoid) of its maximum, so almost no gradient passes (Glorot & Bengio 2010, Sec. 3).
    Activation("tanh", "torch.nn.Tanh", "tanh",
               lambda x, s: np.tanh(x), lambda x, s: 1.0 - np.tanh(x) ** 2,
               saturated=lambda h: h.abs() > 0.99),
    Activation("sigmoid", "torch.nn.Sigmoid", "sigmoid",
               lambda x, s: _sigmoid(x), lambda x, s: _sigmoid(x) * (1.0 - _sigmoid(x)),
               saturated=lambda h: (h < 0.01) | (h > 0.99)),
    # Exact GELU, as torch.nn.GELU. torch.nn.init.calculate_gain knows no GELU: its gain follows the
    # second-moment argument of He et al. 2015 (Sec. 2.2), gain = 1/sqrt(E[gelu(z)^2]) for z ~ N(0, 1)
    # (for ReLU the same formula gives sqrt(2)); E[gelu(z)^2] = 0.42522 by quadrature (tests/test_init.py).
    Activation("gelu", "torch.nn.GELU", None,
               lambda x, s: x * _gelu_cdf(x),
               lambda x, s: _gelu_cdf(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi), gain=1.5335),
    Activation("selu", "torch.nn.SELU", "selu",
               lambda x, s: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(np.minimum(x, 0)) - 1.0)),
               lambda x, s: SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0)))),
    Activation("identity", "torch.nn.Identity", "linear", lambda x, s: x, lambda x, s: np.ones_like(x)),
)}
NAMES = tuple(ACTIVATIONS)
