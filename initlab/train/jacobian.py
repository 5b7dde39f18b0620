"""Dynamical isometry at init: the singular values of a net's input-output Jacobian.

Pennington, Schoenholz & Ganguli 2017 ("Resurrecting the sigmoid in deep learning through
dynamical isometry") show that a deep net learns fast when every singular value of
J = d x^L / d x^0 = D^L W^L ... D^1 W^1 is near 1 (D^l = diag(phi'(h^l))), not only their mean
square (which chi_1 = 1 already gives): orthogonal weights with tanh near criticality keep the
spectrum narrow at any depth; Gaussian weights, and ReLU with any weights, let it spread out.

Here x^0 is the input and x^L the last hidden layer's activation (the readout layer, 10 outputs,
is left out as in the paper: its 10 singular values say nothing about depth). J has one singular
value per hidden unit (width <= input size). They are the square roots of the eigenvalues of
J J^T, built layer by layer as K <- D W K W^T D from K = D^1 W^1 W^1^T D^1, in float64: width x
width matrices only, so a 100-layer, 300-wide net costs about 0.1 s per input.
"""

from __future__ import annotations

import numpy as np
import torch

from initlab.build.model import MLP


def gram(model: MLP, x: torch.Tensor) -> torch.Tensor:
    """J J^T at each input of `x`, (inputs, width, width) in float64 on the model's device."""
    hidden = len(model.linears) - 1
    if hidden < 1:
        raise ValueError("a net without hidden layers has no hidden-layer Jacobian")
    with torch.no_grad():
        taps: list = []
        model(x, taps)
    return gram_of([pre for pre, _ in taps[:hidden]], model.effective_weights()[:hidden],
                   model.activations[:hidden])


def gram_of(pres: list[torch.Tensor], weights: list[torch.Tensor], activations) -> torch.Tensor:
    """J J^T from each hidden layer's pre-activations (..., inputs, width), weight (..., out, in) and
    activation module, built as K <- D W K W^T D in float64; any leading dimensions (a stacked group's
    members: stacked/at_init.py) are carried through: (..., inputs, width, width)."""
    k = None
    for pre, w, act in zip(pres, weights, activations):
        pre = pre.detach().double().requires_grad_()
        with torch.enable_grad():  # phi' elementwise, for any activation module
            slope, = torch.autograd.grad(act(pre).sum(), pre)
        w = w.detach().double()
        wt = w.transpose(-1, -2)
        inner = (w @ wt).unsqueeze(-3) if k is None else w.unsqueeze(-3) @ k @ wt.unsqueeze(-3)
        k = slope[..., :, None] * inner * slope[..., None, :]
    return k


def singular_values_of(gram: torch.Tensor) -> torch.Tensor:
    """The singular values of J from J J^T (gram()), ascending, on the CPU.

    The eigenvalues are always computed on the CPU, by numpy's LAPACK: the same numbers for a run
    on any device (on a GPU a 200 x 200 eigendecomposition is milliseconds of latency-bound work),
    and the vectorized launcher computes them on a thread while its group trains, where torch's
    (MKL's, OpenMP-threaded) took 8x longer than on the main thread (1.1 s against 0.13 s for 128
    inputs on the 2-core VM; numpy's 0.14 s on either, within 3e-15 of torch's)."""
    return torch.from_numpy(np.linalg.eigvalsh(gram.cpu().numpy())).clamp(min=0.0).sqrt()


def singular_values(model: MLP, x: torch.Tensor) -> torch.Tensor:
    """The singular values of d x^L / d x^0 at each input of `x` (inputs x width), ascending."""
    return singular_values_of(gram(model, x))


def summary_of(gram: torch.Tensor) -> dict:
    """Per-run statistics of the spectrum, pooled over the inputs: mean, std, spread (std / mean:
    0 is perfect isometry), max, min, median and the mean squared singular value (chi_1^L in the
    mean-field limit)."""
    sv = singular_values_of(gram).flatten()
    mean = float(sv.mean())
    return {"inputs": int(gram.shape[0]), "units": int(sv.numel() // gram.shape[0]), "sv_mean": mean,
            "sv_std": float(sv.std(correction=0)), "sv_spread": float(sv.std(correction=0)) / mean if mean > 0 else None,
            "sv_max": float(sv.max()), "sv_min": float(sv.min()), "sv_median": float(sv.median()),
            "sq_mean": float((sv ** 2).mean())}


def summary(model: MLP, x: torch.Tensor) -> dict:
    """summary_of(gram(model, x))."""
    return summary_of(gram(model, x))


def gram_for_run(model: MLP, train_x: torch.Tensor, inputs: int) -> torch.Tensor | None:
    """gram() on the first `inputs` training inputs (the same for every run of a dataset), or None
    when `inputs` is 0 or the net has no hidden layer."""
    if inputs <= 0 or len(model.linears) < 2:
        return None
    return gram(model, train_x[:inputs])


def for_run(model: MLP, train_x: torch.Tensor, inputs: int) -> dict | None:
    """summary() on the first `inputs` training inputs, or None (gram_for_run)."""
    k = gram_for_run(model, train_x, inputs)
    return None if k is None else summary_of(k)
