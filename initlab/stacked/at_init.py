"""A stacked group's measurements at init, for every member in one pass over the stacked weights.

What an ordinary run measures on its freshly built net (train/loop.py Training: the symmetric
layers, the theory's inputs, the Jacobian's Gram matrix J J^T) a group measures on its
StackedMLP, with batched reductions and matrix products over the member dimension instead of
a Python loop over members and their small tensors. The Gram matrices' float64 products cost
what they cost (W1 W1^T alone is 200 x 784 x 200 per member): batching removes the loop around
them, not the arithmetic. Each member's values are its ordinary run's up to float rounding
(tests/test_vectorized.py holds them to it).
"""

from __future__ import annotations

from typing import Optional

import torch

from initlab.build.init import symmetric_layers_stacked
from initlab.stacked.models import StackedMLP
from initlab.train import jacobian, predictions

# Members whose Gram matrices are built at once: (members, inputs, width, width) float64 and two
# temporaries of that size; a chunk is kept near this many bytes.
GRAM_CHUNK_BYTES = 64 * 2 ** 20


def symmetric_layers(net: StackedMLP) -> list[list[int]]:
    """Per member, the hidden layers whose units start identical (init.symmetric_layers_stacked)."""
    return symmetric_layers_stacked(net.weights, net.biases)


def theory(net: StackedMLP, model_cfg: dict, q0: float) -> list[Optional[dict]]:
    """Each member's predictions.for_model, from one batched pass for the weights' moments."""
    shapes = [tuple(w.shape[1:]) for w in net.weights]
    return [predictions.from_moments(m, shapes, model_cfg, q0) for m in predictions.moments(net.effective_weights(), net.biases)]


def grams(net: StackedMLP, train_x: torch.Tensor, inputs: int) -> list[Optional[torch.Tensor]]:
    """Each member's jacobian.gram_for_run (J J^T at the first `inputs` training inputs, float64), on the CPU."""
    hidden = len(net.weights) - 1
    if inputs <= 0 or hidden < 1:
        return [None] * net.members
    x = train_x[:inputs]
    width = max(w.shape[1] for w in net.weights[:hidden])
    per_member = 3 * len(x) * width * width * 8
    chunk = max(1, GRAM_CHUNK_BYTES // per_member)
    out: list[Optional[torch.Tensor]] = []
    for start in range(0, net.members, chunk):
        members = slice(start, min(start + chunk, net.members))
        out += list(_gram(net, x, members).cpu().unbind(0))
    return out


def _gram(net: StackedMLP, x: torch.Tensor, members: slice) -> torch.Tensor:
    """jacobian.gram for the members of `members` at once: (members, inputs, width, width)."""
    count = len(range(net.members)[members])
    hidden = len(net.weights) - 1
    with torch.no_grad():
        taps: list = []
        net(x.expand(count, *x.shape), taps, members=members)
    return jacobian.gram_of([pre for pre, _ in taps[:hidden]], [w[members] for w in net.effective_weights()[:hidden]],
                            net.activations[:hidden])
