"""The `param` group against its references: param=mup against microsoft/mup itself (MuReadout,
set_base_shapes, MuSGD / MuAdam / MuAdamW), param=standard against plain torch, param=ntk against
its definition (the standard net's function at init, base_width / fan_in smaller updates)."""

import copy
from typing import Optional

import pytest
import torch
import torch.nn.functional as F
from mup import MuAdam, MuAdamW, MuReadout, MuSGD, set_base_shapes
from torch import nn

from initlab.build import data as datasets
from initlab.build import param
from initlab.config.check import validate
from initlab.config.errors import ConfigError
from initlab.train.loop import build_model, build_optimizer

from conftest import make_config

CPU = torch.device("cpu")
BASE, WIDTH, DEPTH, STEPS = 64, 256, 3, 4


def settings(*overrides: str) -> dict:
    return validate(make_config("data=synthetic", f"model.depth={DEPTH}", "bias=normal", "init=torch_default",
                                *overrides))


def built(s: dict):
    data = datasets.load(s["data"], CPU)
    return build_model(s, data, CPU), data


class MupMLP(nn.Module):
    """The same MLP written as microsoft/mup's users write it: nn.Linear layers and a MuReadout."""

    def __init__(self, width: int, zero_readout: bool = False, output_mult: float = 1.0) -> None:
        super().__init__()
        sizes = [784] + [width] * DEPTH
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.readout = MuReadout(width, 10, readout_zero_init=zero_readout, output_mult=output_mult)

    def forward(self, x):
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.readout(x)

    def layers(self):
        return [*self.hidden, self.readout]


def as_mup(standard_model, zero_readout: bool, output_mult: float) -> MupMLP:
    """mup's model holding the standard parameterization's draw (as its users' init would leave it),
    then set_base_shapes against a base model of width BASE, which rescales it."""
    ref = MupMLP(WIDTH, zero_readout, output_mult)
    with torch.no_grad():
        for mine, theirs in zip(standard_model.linears, ref.layers()):
            if theirs is ref.readout and zero_readout:
                continue  # MuReadout zeroed it
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    return set_base_shapes(ref, MupMLP(BASE, zero_readout, output_mult), rescale_params=True)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    scale = b.abs().max()
    return float((a - b).abs().max() / scale) if scale > 0 else float((a - b).abs().max())


MUP_OPTIMIZERS = {"sgd": MuSGD, "momentum": MuSGD, "adam": MuAdam, "adamw": MuAdamW}


@pytest.mark.parametrize("optim, mup_extra", [
    ("sgd weight_decay=0.001", []),  # MuSGD's decay factors too
    ("momentum", []),
    ("adam", []),
    ("adamw", ["param.zero_readout=true"]),  # MuAdamW's coupled decay; MuReadout(readout_zero_init=True)
    ("adam", ["param.output_mult=4.0"]),
])
def test_mup_is_microsoft_mup(optim, mup_extra):
    """Same draw, same forward pass, same parameters after each of several steps (<= 1e-6 relative)."""
    optim, *decay = optim.split()
    common = [f"optim={optim}", f"model.width={WIDTH}", *(f"optim.{d}" for d in decay)]
    lr = 0.05 if optim in ("sgd", "momentum") else 0.002
    s = settings(*common, "param=mup", f"param.base_width={BASE}", f"lr.value={lr}", *mup_extra)
    standard = settings(*common, f"lr.value={lr}")
    model, data = built(s)
    ref = as_mup(built(standard)[0], s["param"]["zero_readout"], s["param"]["output_mult"])

    for mine, theirs in zip(model.linears, ref.layers()):
        assert rel(mine.weight, theirs.weight) <= 1e-6 and rel(mine.bias, theirs.bias) <= 1e-6
    # (the rescale is not a no-op: the readout is drawn sqrt(4) = 2 larger, the hidden biases too)
    assert rel(model.linears[-1].weight, built(standard)[0].linears[-1].weight) > 0.5 or s["param"]["zero_readout"]

    kwargs = {k: v for k, v in s["optim"].items() if k != "_target_"}
    theirs_opt = MUP_OPTIMIZERS[optim](ref.parameters(), lr=lr, **kwargs)
    mine_opt = build_optimizer(s, model)
    x, y = data.train_x[:128], data.train_y[:128]
    assert rel(model(x), ref(x)) <= 1e-6
    for step in range(STEPS):
        batch = slice(32 * step, 32 * step + 32)
        before = [l.weight.detach().clone() for l in model.linears]
        for net, opt in ((model, mine_opt), (ref, theirs_opt)):
            opt.zero_grad()
            F.cross_entropy(net(x[batch]), y[batch]).backward()
            opt.step()
        for l, (mine, theirs) in enumerate(zip(model.linears, ref.layers())):
            assert rel(mine.weight, theirs.weight) <= 1e-6, (step, l)
            assert rel(mine.bias, theirs.bias) <= 1e-6, (step, l)
            assert rel(mine.weight - before[l], theirs.weight - before[l]) <= 1e-6, (step, l)  # the update itself
    assert rel(model(x), ref(x)) <= 1e-6


@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_standard_is_plain_torch(optim):
    """param=standard trains exactly as torch's optimizer on an nn.Sequential of the same draw."""
    s = settings(f"optim={optim}", "lr.value=0.01")
    model, data = built(s)
    seq = nn.Sequential(*[m for l in model.linears for m in (copy.deepcopy(l), nn.ReLU())][:-1])
    opt = build_optimizer(s, model)
    ref_opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optim](seq.parameters(), lr=0.01)
    x, y = data.train_x[:64], data.train_y[:64]
    for _ in range(3):
        for net, o in ((model, opt), (seq, ref_opt)):
            o.zero_grad()
            F.cross_entropy(net(x), y).backward()
            o.step()
    for mine, theirs in zip(model.linears, [m for m in seq if isinstance(m, nn.Linear)]):
        assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)


def test_ntk_computes_the_standard_net_at_init_and_scales_its_updates():
    """NTK: unit-scale draws and 1/sqrt(fan_in) multipliers give the standard net's function at init; one
    SGD step moves a hidden layer's effective weights base_width / fan_in as far as the standard step."""
    ntk, data = built(settings("param=ntk", f"param.base_width={BASE}", f"model.width={WIDTH}", "lr.value=0.1"))
    std, _ = built(settings(f"model.width={WIDTH}", "lr.value=0.1"))
    x, y = data.train_x[:64], data.train_y[:64]
    assert rel(ntk(x), std(x)) <= 1e-6
    hidden = ntk.linears[1]
    assert float(hidden.weight.detach().std()) == pytest.approx(float(std.linears[1].weight.detach().std()) * (WIDTH / BASE) ** 0.5, rel=1e-6)
    moved = []
    for model, s in ((ntk, "ntk"), (std, "standard")):
        opt = build_optimizer(settings(f"param={s}", f"param.base_width={BASE}" if s == "ntk" else "param=standard",
                                       f"model.width={WIDTH}", "lr.value=0.1"), model)
        before = model.effective_weights()[1].detach().clone()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        moved.append(model.effective_weights()[1].detach() - before)
    # (an update is a difference of float32 weights ~1e4 times its size: equal to ~1e-3 of itself)
    assert rel(moved[0], moved[1] * BASE / WIDTH) <= 1e-3


def test_every_parameterization_is_the_standard_one_at_the_base_width():
    shapes = [(200, 784), (200, 200), (10, 200)]
    for p in (param.ntk(200), param.mup(200)):
        for update in ("sgd", "adam"):
            assert p.scales(shapes, update) == [param.Scales()] * 3


def test_a_standard_run_keeps_its_identity():
    """A run recorded before the param group existed and a param=standard run are one run (resume skips it)."""
    from initlab.store.provenance import config_hash

    s = settings()
    before = {k: v for k, v in s.items() if k != "param"}
    assert config_hash(s) == config_hash(before) == config_hash(settings("param.base_width=64"))
    assert config_hash(settings("param=mup")) != config_hash(s)


def test_a_wrong_param_value_is_one_line():
    with pytest.raises(ConfigError, match=r"param.base_width=0: must be an integer >= 1"):
        settings("param=mup", "param.base_width=0")
    with pytest.raises(ConfigError, match=r"param.zero_readout: not a setting of initlab.param.ntk"):
        settings("param=ntk", "+param.zero_readout=true")


class Halved:
    """A user's own parameterization: every weight drawn half as large."""

    def scales(self, shapes, update):
        return [param.Scales(weight_init=0.5)] * len(shapes)


def halved(base_width: Optional[int] = None) -> Halved:  # (a base width, as a sweep over param may set)
    return Halved()


def test_a_users_own_parameterization_plugs_in():
    mine, _ = built(settings("param._target_=test_param.halved"))
    standard, _ = built(settings())
    for a, b in zip(mine.linears, standard.linears):
        assert torch.equal(a.weight, 0.5 * b.weight) and torch.equal(a.bias, b.bias)
