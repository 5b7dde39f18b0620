"""Weight-initialization schemes: one small in-place function per scheme, each citing its paper.

A scheme is any function that takes a weight matrix of shape (out_features, in_features) as its
only positional argument and its settings as keywords: initlab's own below, a
``torch.nn.init`` function named directly, or a function of the user's (``init._target_`` in a
YAML of their own). Its signature is its schema: config/check.py reads the parameter names, defaults
and annotations (``Annotated[float, POSITIVE]``) to check a config before anything trains.

Every scheme with a torch counterpart has torch's defaults and draws exactly what
``torch.nn.init.<name>_`` draws after the same seed (Xavier gain 1, Kaiming a=0, mode fan_in,
nonlinearity leaky_relu, orthogonal gain 1). A setting ``gain``, ``nonlinearity`` or ``a``
given as ``auto`` follows the model's activation instead (`resolve_auto`), for any scheme; a
``gain`` given as ``critical`` puts the net at the edge of chaos of its activation and biases.
The model builds layers and never initializes them; ``apply_init`` walks them (timm style).
A data-dependent scheme (LSUV) carries a ``data_pass(model, batch, **settings)`` attribute, which
build_model runs on one training batch after every layer is initialized.
"""

from __future__ import annotations

import inspect
import math
from typing import Annotated, Any, Literal, Optional, Union

import torch
from torch import nn

from initlab.activations import ACTIVATIONS, NAMES
from initlab.config.schema import AUTO, CRITICAL, NON_NEGATIVE, POSITIVE, checks, rule
from initlab.config.targets import resolve

GELU_GAIN = ACTIVATIONS["gelu"].gain  # torch.nn.init.calculate_gain knows no GELU: initlab/activations.py

Gain = Annotated[Union[float, Literal["auto", "critical"]],
                 rule(lambda v: v in (AUTO, CRITICAL) or v > 0, "a number > 0, auto or critical")]
Slope = Annotated[Union[float, Literal["auto"]], rule(lambda v: v == AUTO or v >= 0, "a number >= 0 or auto")]
# torch.nn.init.calculate_gain's names, every activation of the registry, and auto (model.activation's)
Nonlinearity = Literal[("linear", *NAMES, "auto")]
Std = Annotated[float, NON_NEGATIVE]


def gain(nonlinearity: str, negative_slope: float = 0.0) -> float:
    """The recommended weight gain for an activation (torch.nn.init.calculate_gain, plus GELU)."""
    known = ACTIVATIONS.get(nonlinearity)
    if known is not None and known.gain is not None:
        return known.gain
    return nn.init.calculate_gain(known.torch_nonlinearity if known is not None else nonlinearity, negative_slope)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a linear layer's weight, shape (out_features, in_features)."""
    return weight.shape[1], weight.shape[0]


@torch.no_grad()
def normal_(weight: torch.Tensor, *, mean: float = 0.0, std: Std = 1.0) -> None:
    """N(mean, std²) (torch.nn.init.normal_); std=1 is `torch.randn`, the founding example's init."""
    nn.init.normal_(weight, mean, std)


@torch.no_grad()
@checks(("a must be less than b", lambda c: c["a"] < c["b"]))
def uniform_(weight: torch.Tensor, *, a: float = 0.0, b: float = 1.0) -> None:
    """U(a, b), the same bounds for every layer (torch.nn.init.uniform_)."""
    nn.init.uniform_(weight, a, b)


@torch.no_grad()
def constant_(weight: torch.Tensor, *, val: float) -> None:
    """Every weight equal to `val` (torch.nn.init.constant_): the symmetric failure for any val."""
    nn.init.constant_(weight, val)


@torch.no_grad()
def zeros_(weight: torch.Tensor) -> None:
    """All zeros (torch.nn.init.zeros_): the units of a layer stay identical forever (the symmetric failure)."""
    nn.init.zeros_(weight)


@torch.no_grad()
def xavier_uniform_(weight: torch.Tensor, *, gain: Gain = 1.0) -> None:
    """Glorot & Bengio 2010, eq. 16: U(±gain·sqrt(6 / (fan_in + fan_out))) (torch.nn.init.xavier_uniform_)."""
    nn.init.xavier_uniform_(weight, gain=gain)


@torch.no_grad()
def xavier_normal_(weight: torch.Tensor, *, gain: Gain = 1.0) -> None:
    """Glorot & Bengio 2010, normal form: std = gain·sqrt(2 / (fan_in + fan_out)) (torch.nn.init.xavier_normal_)."""
    nn.init.xavier_normal_(weight, gain=gain)


def _kaiming_std(weight: torch.Tensor, a: float, mode: str, nonlinearity: str) -> float:
    # He et al. 2015, eq. 10 (fan_in) and eq. 14 (fan_out): Var[w] = gain² / fan.
    fan_in, fan_out = fans(weight)
    return gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


@torch.no_grad()
def kaiming_uniform_(weight: torch.Tensor, *, a: Slope = 0.0, mode: Literal["fan_in", "fan_out"] = "fan_in",
                     nonlinearity: Nonlinearity = "leaky_relu") -> None:
    """He et al. 2015: U(±sqrt(3)·std) with std = gain / sqrt(fan) (torch.nn.init.kaiming_uniform_)."""
    bound = math.sqrt(3.0) * _kaiming_std(weight, a, mode, nonlinearity)
    weight.uniform_(-bound, bound)


@torch.no_grad()
def kaiming_normal_(weight: torch.Tensor, *, a: Slope = 0.0, mode: Literal["fan_in", "fan_out"] = "fan_in",
                    nonlinearity: Nonlinearity = "leaky_relu") -> None:
    """He et al. 2015: N(0, gain² / fan); sqrt(2 / fan_in) for ReLU (torch.nn.init.kaiming_normal_)."""
    weight.normal_(0.0, _kaiming_std(weight, a, mode, nonlinearity))


@torch.no_grad()
def orthogonal_(weight: torch.Tensor, *, gain: Gain = 1.0) -> None:
    """Saxe et al. 2014: a (semi-)orthogonal matrix times gain (torch.nn.init.orthogonal_)."""
    nn.init.orthogonal_(weight, gain=gain)


@torch.no_grad()
@checks(("a must be less than b", lambda c: c["a"] < c["b"]))
def trunc_normal_(weight: torch.Tensor, *, mean: float = 0.0, std: Annotated[float, POSITIVE] = 1.0,
                  a: float = -2.0, b: float = 2.0) -> None:
    """N(mean, std²) redrawn outside [a, b] (absolute bounds, torch.nn.init.trunc_normal_), as in ViT/timm."""
    nn.init.trunc_normal_(weight, mean=mean, std=std, a=a, b=b)


@torch.no_grad()
def lecun_normal_(weight: torch.Tensor) -> None:
    """LeCun et al. 1998 (Efficient BackProp, 4.6): N(0, 1 / fan_in). No torch counterpart; Keras's
    lecun_normal is the truncated form, variance_scaling(scale=1, mode=fan_in)."""
    weight.normal_(0.0, 1.0 / math.sqrt(fans(weight)[0]))


@torch.no_grad()
def torch_default_(weight: torch.Tensor) -> None:
    """What nn.Linear does by itself: kaiming_uniform_(a=sqrt(5)), i.e. U(±1/sqrt(fan_in)).

    This is also the "standard" initialization that Glorot & Bengio 2010 (eq. 1) compare against.
    """
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


def lsuv_rescale(model: nn.Module, x: torch.Tensor, *, tol: float = 0.1, max_passes: int = 10) -> list[int]:
    """LSUV's second step (Mishkin & Matas 2016, Algorithm 1): for each linear layer in order, forward
    the batch `x` and divide the layer's weights by the std of its outputs (pre-activations, all units
    and inputs together) until their variance is within `tol` of 1, at most `max_passes` times.
    Returns the passes each layer took (0: already within tol).

    An MLP (``linears`` and ``activations``) is walked layer by layer, each layer's input kept from
    the layers already fixed, so a pass costs one layer; any other model is run whole per pass."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    sequential = hasattr(model, "linears") and hasattr(model, "activations") and list(model.linears) == linears \
        and all(s.multiplier == 1.0 for s in getattr(model, "scales", ()))  # a layer alone would skip its multiplier
    taken = []
    with torch.no_grad():
        inputs = x
        for l, layer in enumerate(linears):
            passes = 0
            while True:
                if sequential:
                    out = layer(inputs)
                else:
                    taps: list = []
                    model(x, taps)
                    out = taps[l][0]
                variance = float(out.var())
                if passes == max_passes or abs(variance - 1.0) < tol or not math.isfinite(variance) or variance == 0.0:
                    break  # within tol, out of passes, or nothing to rescale (a dead or non-finite layer stays)
                layer.weight.div_(math.sqrt(variance))
                passes += 1
            if sequential:
                inputs = model.activations[l](out)
            taken.append(passes)
    return taken


@torch.no_grad()
def lsuv_(weight: torch.Tensor, *, tol: Annotated[float, POSITIVE] = 0.1,
          max_passes: Annotated[int, rule(lambda v: v >= 1, "an integer >= 1")] = 10) -> None:
    """LSUV, layer-sequential unit-variance (Mishkin & Matas 2016, "All you need is a good init").

    Data-dependent: orthonormal weights first (Saxe et al. 2014; torch.nn.init.orthogonal_, gain 1),
    here; then, once the whole net is built, `lsuv_rescale` on one training batch (this scheme's
    `data_pass`, which build_model runs with the same settings): each layer in turn is scaled until
    its outputs have unit variance (within `tol`, at most `max_passes` rescalings per layer).
    """
    nn.init.orthogonal_(weight)


lsuv_.data_pass = lsuv_rescale  # type: ignore[attr-defined]


# The std of a standard normal truncated to [-2, 2]: Keras and Flax divide by it so that the
# truncated draw has exactly the variance asked for.
TRUNCATED_STD = 0.87962566103423978


@torch.no_grad()
def variance_scaling_(weight: torch.Tensor, *, scale: Annotated[float, POSITIVE] = 1.0,
                      mode: Literal["fan_in", "fan_out", "fan_avg"] = "fan_in",
                      distribution: Literal["truncated_normal", "normal", "uniform"] = "truncated_normal") -> None:
    """Keras/Flax VarianceScaling: Var[w] = scale / n, n = fan_in, fan_out or their mean.

    The mean-field parameterization of the signal-propagation papers (Poole et al. 2016,
    Schoenholz et al. 2017): scale = sigma_w^2 with mode fan_in. `truncated_normal` draws
    N(0, 1) truncated to ±2 and rescaled by 1/0.8796 (the truncated std), `uniform` draws
    U(±sqrt(3·scale/n)), `normal` the plain Gaussian.
    """
    fan_in, fan_out = fans(weight)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = math.sqrt(scale / n)
    if distribution == "truncated_normal":
        wide = std / TRUNCATED_STD
        nn.init.trunc_normal_(weight, 0.0, wide, -2 * wide, 2 * wide)
    elif distribution == "normal":
        weight.normal_(0.0, std)
    else:
        bound = math.sqrt(3.0) * std
        weight.uniform_(-bound, bound)


# --- applying a scheme ---------------------------------------------------------------------------


def resolve_auto(settings: dict, activation: str, negative_slope: float,
                 bias: Optional[tuple[float, float]] = None) -> dict[str, Any]:
    """A scheme's keyword arguments, with each `auto` gain/nonlinearity/a taken from the model, and
    a `critical` gain from mean-field theory: sqrt of the sigma_w^2 where chi_1 = 1 for the model's
    activation and the biases' (mean, variance) `bias` (Poole et al. 2016; Schoenholz et al. 2017)."""
    if settings.get("gain") == CRITICAL:
        from initlab import theory
        if bias is None:
            raise ValueError("gain=critical needs biases of one known mean and variance (bias=zeros, constant or normal)")
        mu_b, sigma_b2 = bias
        critical = math.sqrt(theory.critical_sigma_w2(sigma_b2, activation, negative_slope, mu=mu_b))
        settings = {**settings, "gain": critical}
    from_model = {
        "gain": gain(activation, negative_slope),
        "nonlinearity": activation,
        "a": negative_slope if activation == "leaky_relu" else 0.0,
    }
    kwargs = {k: v for k, v in settings.items() if k != "_target_"}
    return {k: (from_model[k] if v == AUTO and k in from_model else v) for k, v in kwargs.items()}


def _set(tensor: torch.Tensor, returned: Any) -> None:
    """A scheme may fill the tensor in place (torch.nn.init style) or return a new one: take either."""
    if isinstance(returned, torch.Tensor) and returned.data_ptr() != tensor.data_ptr():
        if returned.shape != tensor.shape:
            raise ValueError(f"an init scheme returned shape {tuple(returned.shape)} for a tensor of shape "
                             f"{tuple(tensor.shape)}")
        tensor.copy_(returned)


def apply_init(model: nn.Module, init_cfg: dict, bias_cfg: dict, activation: str, negative_slope: float = 0.01) -> None:
    """Initialize every nn.Linear of `model` in place: weights with `init_cfg`, biases with `bias_cfg`.

    Both are config nodes ({'_target_': ..., settings}). Schemes run under torch.no_grad(), so
    a plain `w.normal_()` works. Uses the global torch RNG, so seeding it first makes the
    weights reproducible.
    """
    from initlab.theory import bias_moments

    scheme, bias_scheme = resolve(init_cfg["_target_"]), resolve(bias_cfg["_target_"])
    kwargs = resolve_auto(init_cfg, activation, negative_slope, bias_moments(bias_cfg))
    bias_kwargs = resolve_auto(bias_cfg, activation, negative_slope)
    wants_weight = "weight" in inspect.signature(bias_scheme).parameters
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                _set(module.weight, scheme(module.weight, **kwargs))
                if module.bias is not None:
                    extra = {"weight": module.weight} if wants_weight else {}
                    _set(module.bias, bias_scheme(module.bias, **bias_kwargs, **extra))


def symmetric_layers(weights: list[torch.Tensor], biases: list[torch.Tensor]) -> list[int]:
    """Hidden layers whose units start identical and therefore stay identical (the symmetric failure).

    A hidden unit's forward value depends on its row of W_l and its bias; its backward signal on
    its column of W_{l+1}. When all rows, all biases and all next-layer columns are equal, every
    unit of layer l computes the same value and receives the same gradient at every step, so the
    layer acts as a single unit however wide it is (Goodfellow et al. 2016, Deep Learning, Sec. 8.4).
    """
    return symmetric_layers_stacked([w.unsqueeze(0) for w in weights], [b.unsqueeze(0) for b in biases])[0]


def symmetric_layers_stacked(weights: list[torch.Tensor], biases: list[torch.Tensor]) -> list[list[int]]:
    """symmetric_layers for each member of stacked weights (members, out, in) and biases (members, out), in
    one pass per layer (a vectorized group's members: stacked/at_init.py)."""
    found: list[list[int]] = [[] for _ in range(len(weights[0]))]
    with torch.no_grad():
        for l in range(len(weights) - 1):
            w, b, nxt = weights[l], biases[l], weights[l + 1]
            if w.shape[1] <= 1:
                continue
            same = ((w == w[:, :1]).flatten(1).all(1) & (b == b[:, :1]).all(1)
                    & (nxt == nxt[:, :, :1]).flatten(1).all(1))
            for k in torch.nonzero(same).flatten().tolist():
                found[k].append(l)
    return found
