"""Parameterizations: how each layer's init scale, forward multiplier and learning rate follow width.

An abc-parameterization (Yang & Hu 2021, "Feature Learning in Infinite-Width Neural Networks")
writes a layer as  pre = W (multiplier * x) + b,  W drawn with some scale, trained with some
learning rate, each a power of the width. The `param` config group picks one:

- `standard` (the default): what the init scheme draws, no multiplier, one learning rate.
- `ntk` (Jacot et al. 2018): weights of unit scale at any width, the forward pass divides by
  sqrt(fan_in); at init the net computes what the standard one does, but every update of a
  hidden or output weight is width/base_width times smaller.
- `mup` (Tensor Programs V, Yang et al. 2022), exactly as microsoft/mup implements it with
  `MuReadout` + `set_base_shapes(rescale_params=True)` + `MuSGD` / `MuAdam` / `MuAdamW`: the
  readout divides its input by width_mult (times `output_mult`) and its weights are drawn
  sqrt(width_mult) larger (or start at zero: `zero_readout`); biases after a hidden layer are
  drawn sqrt(width_mult) larger; the learning rates and coupled weight decays follow
  MuSGD's / MuAdam's rules for SGD-like / Adam-like optimizers (`UPDATES`).

width_mult = fan / base_width for a dimension that is a hidden width; the input's features and
the classes are not widths. At model.width == param.base_width every factor is 1 (mup's
output_mult aside): the three parameterizations are one net there, and the base width is where a
learning rate tuned under one of them means the same under the others.

How `init` and `param` compose: the init scheme draws every weight as it would in the standard
parameterization (kaiming_normal: variance 2 / fan_in); the parameterization then multiplies the
drawn values by its factors. So `init` sets the variance at the base width, `param` how it moves
with width. A data-dependent init (LSUV) runs its data pass last, through the multipliers: it
sets each layer's output scale itself, and the parameterization keeps its multipliers and rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Iterable, Optional

import torch

from initlab.config.schema import AT_LEAST_ONE, POSITIVE, STANDARD_PARAM, UPDATES


@dataclass(frozen=True)
class Scales:
    """One layer's factors. The drawn weight and bias are multiplied by weight_init, bias_init (set to 0
    when `zero`); the layer's input by `multiplier`; the learning rate and the optimizer's weight_decay
    of its weight and bias by the four factors after them."""

    weight_init: float = 1.0
    bias_init: float = 1.0
    zero: bool = False
    multiplier: float = 1.0
    weight_lr: float = 1.0
    bias_lr: float = 1.0
    weight_decay: float = 1.0
    bias_decay: float = 1.0

    def trains_as_standard(self) -> bool:
        """Whether its learning rates and decays are the optimizer's own."""
        return self.weight_lr == self.bias_lr == self.weight_decay == self.bias_decay == 1.0


@dataclass(frozen=True)
class Parameterization:
    """A named rule giving each layer's Scales from the layers' shapes (out, in) and the update kind."""

    name: str
    base_width: Optional[int] = None
    zero_readout: bool = False
    output_mult: float = 1.0

    def scales(self, shapes: list[tuple[int, int]], update: str) -> list[Scales]:
        """Each layer's Scales; `update` is 'sgd' or 'adam' (UPDATES of the optimizer's target)."""
        rule = {"standard": _standard, "ntk": _ntk, "mup": _mup}[self.name]
        return [rule(self, *width_mults(shapes, l, self.base_width), update) for l in range(len(shapes))]


def width_mults(shapes: list[tuple[int, int]], layer: int, base_width: Optional[int]) -> tuple[float, float, bool, bool]:
    """(fan-in width_mult, fan-out width_mult, fan-in is a width, fan-out is a width) of a layer: its input
    is a hidden width unless it is the first layer, its output unless it is the last."""
    fan_out, fan_in = shapes[layer]
    in_is_width, out_is_width = layer > 0, layer < len(shapes) - 1
    base = base_width or 1
    return (fan_in / base if in_is_width else 1.0, fan_out / base if out_is_width else 1.0, in_is_width, out_is_width)


def _standard(p: Parameterization, m_in: float, m_out: float, in_w: bool, out_w: bool, update: str) -> Scales:
    return Scales()


def _ntk(p: Parameterization, m_in: float, m_out: float, in_w: bool, out_w: bool, update: str) -> Scales:
    # Unit-scale weights (relative to the base width), 1/sqrt(fan_in) in the forward pass: the effective
    # weights are the standard draw; the learning rate is not scaled (NTK's is width-independent for SGD).
    return Scales(weight_init=math.sqrt(m_in), multiplier=1.0 / math.sqrt(m_in)) if m_in != 1.0 else Scales()


def _mup(p: Parameterization, m_in: float, m_out: float, in_w: bool, out_w: bool, update: str) -> Scales:
    readout = in_w and not out_w
    inf = int(in_w) + int(out_w)  # mup's InfShape.ninf() of the weight
    # mup's width_mult() of a weight is its last infinite dimension's: fan-in when both are widths
    main = m_in if in_w else m_out
    if update == "sgd":  # MuSGD: vector-like x width_mult, matrix-like / (fanin_mult / fanout_mult); decay the inverse
        weight_lr = main if inf == 1 else (m_out / m_in if inf == 2 else 1.0)
        bias_lr = m_out if out_w else 1.0
    else:  # MuAdam, MuAdamW: matrix-like / width_mult (fan-in's), the rest as they are
        weight_lr = 1.0 / m_in if inf == 2 else 1.0
        bias_lr = 1.0
    return Scales(weight_init=math.sqrt(m_in) if readout else 1.0,
                  # set_base_shapes rescales every bias by sqrt(fan-in width_mult) (rescale_linear_bias; MuReadout's own)
                  bias_init=math.sqrt(m_in), zero=readout and p.zero_readout,
                  multiplier=p.output_mult / m_in if readout else 1.0,
                  weight_lr=weight_lr, bias_lr=bias_lr, weight_decay=1.0 / weight_lr, bias_decay=1.0 / bias_lr)


# The config group's options: each function's signature is its schema (config/check.py). A user's own option
# names a function of theirs (param._target_) returning anything with Parameterization's `scales` method.

def standard(base_width: Annotated[Optional[int], AT_LEAST_ONE] = None) -> Parameterization:
    """The standard parameterization: the init scheme's draw, no multipliers, one learning rate. It is the
    same at every width: `base_width` is accepted so that a sweep over param sets it once (param=standard,mup
    param.base_width=64), and changes nothing (nor the run's identity: store/provenance.py)."""
    return Parameterization("standard")


def ntk(base_width: Annotated[int, AT_LEAST_ONE] = 200) -> Parameterization:
    """The NTK parameterization (Jacot et al. 2018), equal to the standard one at `base_width`."""
    return Parameterization("ntk", base_width)


def mup(base_width: Annotated[int, AT_LEAST_ONE] = 200, zero_readout: bool = False,
        output_mult: Annotated[float, POSITIVE] = 1.0) -> Parameterization:
    """muP (Yang et al. 2022) as microsoft/mup's MuReadout(readout_zero_init, output_mult) + set_base_shapes
    with a base model of width `base_width` + MuSGD / MuAdam / MuAdamW."""
    return Parameterization("mup", base_width, zero_readout, output_mult)


def of(settings: dict) -> Parameterization:
    """The run's parameterization (a config without a `param` group is standard: recorded before it existed)."""
    from initlab.config.targets import resolve

    node = settings.get("param") or {"_target_": STANDARD_PARAM}
    return resolve(node["_target_"])(**{k: v for k, v in node.items() if k != "_target_"})


def scales_of(settings: dict, shapes: list[tuple[int, int]]) -> list[Scales]:
    return of(settings).scales(shapes, UPDATES[settings["optim"]["_target_"]])


@torch.no_grad()
def rescale(weights: Iterable[torch.Tensor], biases: Iterable[Optional[torch.Tensor]], scales: list[Scales]) -> None:
    """Multiply drawn weights and biases in place by their layers' init factors (zero a zero readout)."""
    for w, b, s in zip(weights, biases, scales):
        for t, factor in ((w, s.weight_init), (b, s.bias_init)):
            if t is None:
                continue
            if s.zero:
                t.zero_()
            elif factor != 1.0:
                t.mul_(factor)


def param_groups(params: list[tuple[torch.Tensor, Optional[torch.Tensor]]], scales: list[Scales],
                 weight_decay: float) -> list:
    """The optimizer's parameters: as they are when every factor is 1 (the optimizer the standard
    parameterization always built), else one group per tensor with its `lr_scale` (the schedule's rate is
    multiplied by it: set_rates) and its weight_decay."""
    if all(s.trains_as_standard() for s in scales):
        return [t for w, b in params for t in (w, b) if t is not None]
    groups = []
    for (w, b), s in zip(params, scales):
        groups.append({"params": [w], "lr_scale": s.weight_lr, "weight_decay": weight_decay * s.weight_decay})
        if b is not None:
            groups.append({"params": [b], "lr_scale": s.bias_lr, "weight_decay": weight_decay * s.bias_decay})
    return groups


def set_rates(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's rate for this step, times each group's lr_scale (as MuSGD / MuAdam scale theirs)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr


def lr_factors(scales: list[Scales]) -> list[float]:
    """Per parameter tensor, in the order (w0, b0, w1, b1, ...): its learning-rate factor."""
    return [f for s in scales for f in (s.weight_lr, s.bias_lr)]


def decay_factors(scales: list[Scales]) -> list[float]:
    return [f for s in scales for f in (s.weight_decay, s.bias_decay)]

