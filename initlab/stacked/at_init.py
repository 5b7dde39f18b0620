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

from initlab.stacked.models import StackedMLP
from initlab.train import predictions

# Members whose Gram matrices are built at once: (members, inputs, width, width) float64 and two
# temporaries of that size; a chunk is kept near this many bytes.
GRAM_CHUNK_BYTES = 64 * 2 ** 20


def symmetric_layers(net: StackedMLP) -> list[list[int]]:
    """Per member, the hidden layers whose units start identical (init.symmetric_layers, for each
    member of the stack): every row of W_l, every bias of b_l and every column of W_{l+1} equal."""
    found: list[list[int]] = [[] for _ in range(net.members)]
    with torch.no_grad():
        for l in range(len(net.weights) - 1):
            w, b, nxt = net.weights[l], net.biases[l], net.weights[l + 1]
            if w.shape[1] <= 1:
                continue
            same = ((w == w[:, :1]).flatten(1).all(1) & (b == b[:, :1]).all(1)
                    & (nxt == nxt[:, :, :1]).flatten(1).all(1))
            for k in torch.nonzero(same).flatten().tolist():
                found[k].append(l)
    return found


def theory(net: StackedMLP, model_cfg: dict, q0: float) -> list[Optional[dict]]:
    """Each member's predictions.for_model, from one batched pass for the weights' moments."""
    shapes = [tuple(w.shape[1:]) for w in net.weights]
    return [predictions.from_moments(m, shapes, model_cfg, q0) for m in predictions.moments(net.weights, net.biases)]


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
    with torch.no_grad():
        taps: list = []
        net(x.expand(count, *x.shape), taps, members=members)
    k = None
    for l in range(len(net.weights) - 1):
        pre = taps[l][0].detach().double().requires_grad_()  # (members, inputs, width)
        with torch.enable_grad():  # phi' elementwise, for any activation module
            slope, = torch.autograd.grad(net.activations[l](pre).sum(), pre)
        w = net.weights[l][members].detach().double()  # (members, out, in)
        wt = w.transpose(1, 2)
        inner = (w @ wt).unsqueeze(1) if k is None else w.unsqueeze(1) @ k @ wt.unsqueeze(1)
        k = slope[..., :, None] * inner * slope[..., None, :]
    return k
