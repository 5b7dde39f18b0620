"""Weight-initialization schemes: one small in-place function per scheme, each citing its paper.

Every scheme takes a weight matrix of shape (fan_out, fan_in) as its only positional
argument and its settings as keywords: exactly the keys of its YAML file in ``conf/init/``.
A setting left ``null`` (gain, nonlinearity, a) is filled from the model's activation by
``apply_init``, so ``init=xavier_uniform`` does the right thing for a tanh net and a ReLU net.
The model builds layers and never initializes them; ``apply_init`` walks them (timm style).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from hydra.utils import get_method
from torch import nn

# torch.nn.init.calculate_gain knows no GELU. Its gain here follows the second-moment argument
# of He et al. 2015 (Sec. 2.2): gain = 1/sqrt(E[gelu(z)^2]) for z ~ N(0, 1); for ReLU the same
# formula gives sqrt(2). E[gelu(z)^2] = 0.42522 by quadrature (checked in tests/test_init.py).
GELU_GAIN = 1.5335

# initlab's activation names -> torch.nn.init's nonlinearity names.
_TORCH_NONLINEARITY = {"identity": "linear"}


def gain(nonlinearity: str, negative_slope: float = 0.0) -> float:
    """The recommended weight gain for an activation (torch.nn.init.calculate_gain, plus GELU)."""
    if nonlinearity == "gelu":
        return GELU_GAIN
    return nn.init.calculate_gain(_TORCH_NONLINEARITY.get(nonlinearity, nonlinearity), negative_slope)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a linear layer's weight, shape (out_features, in_features)."""
    return weight.shape[1], weight.shape[0]


@torch.no_grad()
def normal_(weight: torch.Tensor, *, mean: float, std: float) -> None:
    """N(mean, std²); std=1 is `torch.randn`, the founding example's init."""
    weight.normal_(mean, std)


@torch.no_grad()
def uniform_(weight: torch.Tensor, *, a: float, b: float) -> None:
    """U(a, b), the same bounds for every layer."""
    weight.uniform_(a, b)


@torch.no_grad()
def xavier_uniform_(weight: torch.Tensor, *, gain: float) -> None:
    """Glorot & Bengio 2010, eq. 16: U(±gain·sqrt(6 / (fan_in + fan_out)))."""
    fan_in, fan_out = fans(weight)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    weight.uniform_(-bound, bound)


@torch.no_grad()
def xavier_normal_(weight: torch.Tensor, *, gain: float) -> None:
    """Glorot & Bengio 2010, normal form: std = gain·sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(weight)
    weight.normal_(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(weight: torch.Tensor, a: float, mode: str, nonlinearity: str) -> float:
    # He et al. 2015, eq. 10 (fan_in) and eq. 14 (fan_out): Var[w] = gain² / fan.
    fan_in, fan_out = fans(weight)
    fan = fan_in if mode == "fan_in" else fan_out
    return gain(nonlinearity, a) / math.sqrt(fan)


@torch.no_grad()
def kaiming_uniform_(weight: torch.Tensor, *, a: float, mode: str, nonlinearity: str) -> None:
    """He et al. 2015: U(±sqrt(3)·std) with std = gain / sqrt(fan)."""
    bound = math.sqrt(3.0) * _kaiming_std(weight, a, mode, nonlinearity)
    weight.uniform_(-bound, bound)


@torch.no_grad()
def kaiming_normal_(weight: torch.Tensor, *, a: float, mode: str, nonlinearity: str) -> None:
    """He et al. 2015: N(0, gain² / fan); sqrt(2 / fan_in) for ReLU."""
    weight.normal_(0.0, _kaiming_std(weight, a, mode, nonlinearity))


@torch.no_grad()
def orthogonal_(weight: torch.Tensor, *, gain: float) -> None:
    """Saxe et al. 2014: a (semi-)orthogonal matrix times gain."""
    nn.init.orthogonal_(weight, gain=gain)


@torch.no_grad()
def lecun_normal_(weight: torch.Tensor) -> None:
    """LeCun et al. 1998 (Efficient BackProp, 4.6): N(0, 1 / fan_in)."""
    weight.normal_(0.0, 1.0 / math.sqrt(fans(weight)[0]))


@torch.no_grad()
def trunc_normal_(weight: torch.Tensor, *, mean: float, std: float, a: float, b: float) -> None:
    """N(mean, std²) redrawn outside [a, b] (absolute bounds, as torch.nn.init.trunc_normal_)."""
    nn.init.trunc_normal_(weight, mean=mean, std=std, a=a, b=b)


@torch.no_grad()
def torch_default_(weight: torch.Tensor) -> None:
    """What nn.Linear does by itself: kaiming_uniform_(a=sqrt(5)), i.e. U(±1/sqrt(fan_in)).

    This is also the "standard" initialization that Glorot & Bengio 2010 (eq. 1) compare against.
    """
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


@torch.no_grad()
def zeros_(weight: torch.Tensor) -> None:
    """All zeros: the units of a layer stay identical forever (the symmetric failure)."""
    weight.zero_()


@torch.no_grad()
def init_bias_(bias: torch.Tensor, weight: torch.Tensor, value: float | str) -> None:
    """Set a bias to a constant, or to nn.Linear's own U(±1/sqrt(fan_in)) for 'torch_default'."""
    if value == "torch_default":
        bound = 1.0 / math.sqrt(fans(weight)[0])
        bias.uniform_(-bound, bound)
    else:
        bias.fill_(float(value))


def scheme_kwargs(init_cfg: dict, activation: str, negative_slope: float) -> dict[str, Any]:
    """The scheme's keyword arguments, with each null gain/nonlinearity/a taken from the model."""
    kwargs = {k: v for k, v in init_cfg.items() if k not in ("_target_", "bias")}
    from_model = {
        "gain": gain(activation, negative_slope),
        "nonlinearity": activation,
        "a": negative_slope if activation == "leaky_relu" else 0.0,
    }
    return {k: (from_model[k] if v is None and k in from_model else v) for k, v in kwargs.items()}


def apply_init(model: nn.Module, init_cfg: dict, activation: str, negative_slope: float = 0.01) -> None:
    """Initialize every nn.Linear of `model` in place with the scheme `init_cfg` names.

    Uses the global torch RNG, so seeding it first makes the weights reproducible.
    """
    scheme = get_method(init_cfg["_target_"])
    kwargs = scheme_kwargs(init_cfg, activation, negative_slope)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            scheme(module.weight, **kwargs)
            if module.bias is not None:
                init_bias_(module.bias, module.weight, init_cfg.get("bias", 0.0))
