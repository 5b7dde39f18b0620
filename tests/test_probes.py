"""The probes on a stacked group (one batched norm per tensor) and on each member alone (one
multi-tensor norm for all of them) record the same values; dead and saturated units as defined."""

import contextlib
import math

import pytest
import torch

from initlab.train.layers import Layers
from initlab.train.probes import Activations, _runs
from initlab.train.recorder import Recorder

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda x: x}


def stacked_layers(members: int, names: tuple[str, ...], seed: int = 0) -> Layers:
    g = torch.Generator().manual_seed(seed)
    dims = [12, 9, 7, 4]
    weights = [torch.randn(members, o, i, generator=g) for i, o in zip(dims, dims[1:])]
    biases = [torch.randn(members, o, generator=g) for o in dims[1:]]
    taps, pre_grads = [], []
    for o, name in zip(dims[1:], names):
        pre = 3 * torch.randn(members, 6, o, generator=g)
        taps.append((pre, ACTIVATIONS[name](pre)))
        pre_grads.append(torch.randn(members, 6, o, generator=g))
    return Layers(weights, biases, [torch.randn(w.shape, generator=g) for w in weights],
                  [torch.randn(b.shape, generator=g) for b in biases], taps, pre_grads, list(names))


def member(layers: Layers, k: int) -> Layers:
    """Member k of a stacked view, as a view of its own (a stack of one, as Layers.of_model gives)."""
    one = lambda t: None if t is None else t[k:k + 1]  # noqa: E731
    return Layers([one(t) for t in layers.weights], [one(t) for t in layers.biases],
                  [one(t) for t in layers.weight_grads], [one(t) for t in layers.bias_grads],
                  [(one(p), one(q)) for p, q in layers.taps], [one(t) for t in layers.pre_grads],
                  layers.activation_names)


def recorded(layers: Layers, step) -> torch.Tensor:
    recorder = Recorder()
    recorder.before_step(layers)
    step(layers)
    return recorder.after_values(layers)


def update(layers: Layers) -> None:
    for w in layers.weights:
        w.mul_(0.9)


def test_a_stacked_group_records_what_each_member_records_alone():
    layers = stacked_layers(3, ("tanh", "sigmoid", "relu"))
    post = layers.taps[0][1]
    post[0, :, 1] = float("nan")  # not dead: NaN is not 0
    post[1, :, 2] = float("inf")
    post[:, :, 3] = 0.0  # dead in every member
    layers.bias_grads[1] = None  # no gradient yet: recorded as a zero norm
    alone = [member(layers, k) for k in range(3)]
    before = [w.clone() for w in layers.weights]
    together = recorded(layers, update)
    for w, b in zip(layers.weights, before):
        w.copy_(b)
    for k in range(3):
        got = recorded(alone[k], update)
        for w, b in zip(layers.weights, before):  # the next member's update starts from the same weights
            w[k:k + 1].copy_(b[k:k + 1])
        assert torch.allclose(got[0], together[k], rtol=1e-6, atol=0, equal_nan=True), k


def test_dead_and_saturated_fractions_and_the_update_ratio():
    layers = stacked_layers(1, ("relu", "tanh", "identity"))
    relu_out, tanh_out = layers.taps[0][1], layers.taps[1][1]
    relu_out[0, :, :4] = 0.0  # dead (with any unit whose 6 inputs happened to be negative)
    relu_out[0, 0, 4] = float("nan")  # 0 everywhere else, but not dead
    relu_out[0, 1:, 4] = 0.0
    metrics = Recorder().metrics
    w_before = [w.clone() for w in layers.weights]
    values = recorded(layers, update)[0]
    dead, sat, ratio = (metrics.index(m) for m in ("dead_fraction", "saturated_fraction", "update_ratio"))
    assert values[0, dead] == (relu_out[0] == 0).all(0).float().mean()  # NaN == 0 is False: not dead
    assert (relu_out[0] == 0).all(0)[:4].all() and not (relu_out[0] == 0).all(0)[4]
    assert values[1, sat] == (tanh_out.abs() > 0.99).double().mean().float()
    assert values[0, sat] == 0 and values[2, sat] == 0  # relu and identity do not saturate
    for layer, (w, b) in enumerate(zip(layers.weights, w_before)):
        assert math.isclose(values[layer, ratio], float((w - b).norm() / b.norm()), rel_tol=1e-6)


@pytest.mark.parametrize("together", [True, False])
def test_layers_in_a_run_of_one_shape_and_activation_are_measured_together_each_as_its_own(together):
    """On a GPU Activations stacks consecutive layers whose taps share a shape and an activation
    (one std_mean for all of them; `together`), on the CPU it reduces each layer alone: either
    way each layer's values are those of its own tensors, and the same."""
    g = torch.Generator().manual_seed(1)
    names = ("tanh", "tanh", "tanh", "relu", "relu", "identity")
    widths = (8, 8, 5, 5, 5, 5)
    taps = []
    for width, name in zip(widths, names):
        pre = 2 * torch.randn(3, 7, width, generator=g)
        post = ACTIVATIONS[name](pre)
        taps.append((pre, post))
    taps[3][1][1, :, 0] = 0.0  # a dead unit in member 1 (with any whose inputs were all negative)
    assert _runs(taps, list(names)) == [(0, 2), (2, 3), (3, 5), (5, 6)]
    none = [None] * len(names)
    layers = Layers([torch.zeros(3, 1, 1)] * len(names), none, none, none, taps, none, list(names))
    values = Activations(together).before_step(layers)
    assert values.shape == (3, len(names), len(Activations.metrics))
    assert torch.equal(values, Activations(not together).before_step(layers))  # bit for bit, on the CPU
    for k in range(3):
        for layer, ((pre, post), name) in enumerate(zip(taps, names)):
            post, pre = post[k].double(), pre[k].double()
            saturated = (post.abs() > 0.99).double().mean() if name == "tanh" else torch.zeros((), dtype=torch.float64)
            expected = torch.stack([post.mean(), post.std(), pre.std(), (post == 0).all(0).double().mean(), saturated,
                                    pre.abs().mean()])
            assert torch.allclose(values[k, layer].double(), expected, rtol=1e-5, atol=1e-7), (k, layer)


class PartsInOrder:
    """side_streams.Fork's interface on the CPU: every part runs on the current stream, and the
    fork remembers which parts ran and whether it was joined."""

    def __init__(self) -> None:
        self.parts, self.joined = [], False

    def on(self, part: int):
        self.parts.append(part)
        return contextlib.nullcontext()

    def reads(self, *tensors) -> None:
        pass

    def hand_back(self, *tensors) -> None:
        assert not self.joined

    def join(self) -> None:
        self.joined = True


def test_with_a_fork_each_runs_moments_and_dead_counts_are_parts_of_their_own_with_the_same_values():
    """While a CUDA graph is captured, Activations puts each run's moments and its dead and
    saturated counts on side streams of their own (side_streams.Fork) and joins them before its
    result: the values are those it gives without the fork, bit for bit."""
    layers = stacked_layers(3, ("tanh", "relu", "sigmoid"))
    layers.taps.insert(1, layers.taps[0])  # two layers in a run of one shape and activation
    layers.activation_names = ["tanh", "tanh", "relu", "sigmoid"]
    expected = Activations(True).before_step(layers)
    layers.fork = fork = PartsInOrder()
    assert torch.equal(Activations(True).before_step(layers), expected)
    assert fork.parts == [0, 1, 2, 3, 4, 5] and fork.joined  # three runs, two parts each
