"""Many runs of one architecture trained as one: the engine of the vectorized launcher.

The members of a group share depth, width, activation, data, batch size and epochs, and may
differ in init, learning rate (and schedule), optimizer hyper-parameters and seed. Their
weights are stacked along a leading member dimension and every layer is one batched matmul
(torch.baddbmm). Each member starts from exactly the weights the ordinary runner would build
(`training.build_model`), draws its own batches from its own seeded generator, and has its own
learning rate and optimizer state, so its trajectory is the ordinary run's up to float
rounding. A member whose loss stops being finite is frozen (learning rate 0, no more records);
the others go on.
"""

from __future__ import annotations

import functools
import inspect
from typing import Optional

import torch
import torch.nn.functional as F

from initlab.build.model import MLP, tap
from initlab.config.errors import ConfigError
from initlab.config.targets import resolve, show
from initlab.train.layers import EvaluationPass, Layers


class StackedLinear(torch.autograd.Function):
    """x @ W^T + b for every member at once: x (M, batch, in), W (M, out, in), b (M, out).

    The forward is torch.baddbmm, as autograd would run it. The backward computes W's gradient
    as grad^T @ x, in W's own (M, out, in) layout, as nn.Linear computes an ordinary run's:
    autograd's backward of baddbmm(b, x, W^T) computes x^T @ grad, (M, in, out), and then
    transposes it into W's gradient, a copy of every member's weight-sized gradient per step.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w = ctx.saved_tensors
        grad_x = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(1) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


class StackedMLP:
    """M MLPs of one shape: per layer a weight (M, out, in) and a bias (M, out), all leaf tensors."""

    def __init__(self, models: list[MLP]) -> None:
        self.weights = [torch.stack([m.linears[i].weight.detach() for m in models]).requires_grad_()
                        for i in range(len(models[0].linears))]
        self.biases = [torch.stack([m.linears[i].bias.detach() for m in models]).requires_grad_()
                       for i in range(len(models[0].linears))]
        self.activations = models[0].activations  # stateless modules, the same for every member
        self.activation_names = models[0].activation_names
        # the parameterization's factors (build/param.py): one group's, as its members share `param` (store/keys.py)
        self.scales = models[0].scales
        self.members = len(models)

    def effective_weights(self) -> list[torch.Tensor]:
        """Each layer's stacked weight times its multiplier (MLP.effective_weights)."""
        return [w if s.multiplier == 1.0 else w * s.multiplier for w, s in zip(self.weights, self.scales)]

    def parameters(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def __call__(self, x: torch.Tensor, taps: Optional[list] = None, members: Optional[slice] = None) -> torch.Tensor:
        """x: (M, batch, in) -> (M, batch, classes); with `taps`, each layer's (pre, post) too.
        `members`: only those members (x then has their count as its first dimension). Training
        passes none: even w[:] is a view whose backward copies the weight gradient into a new tensor."""
        for w, b, act, s in zip(self.weights, self.biases, self.activations, self.scales):
            if members is not None:
                w, b = w[members], b[members]
            pre = StackedLinear.apply(x if s.multiplier == 1.0 else x * s.multiplier, w, b)
            x = act(pre)
            tap(taps, pre, x)
        return x

    def layers(self, taps: list = ()) -> Layers:
        """The probes' view of the group (no copies)."""
        return Layers([w.detach() for w in self.weights], [b.detach() for b in self.biases],
                      [w.grad for w in self.weights], [b.grad for b in self.biases],
                      [(pre.detach(), post.detach()) for pre, post in taps], [t.grad for t in taps],
                      self.activation_names)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()


def _per_member(values: list[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _expand(v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """A per-member (M,) vector shaped to broadcast against a stacked parameter."""
    return v.view((-1,) + (1,) * (p.dim() - 1))


def _decays(settings: list[dict], like: torch.Tensor, factors: Optional[list[float]], count: int) -> list[torch.Tensor]:
    """Each parameter's per-member weight decay: the members' own times the parameterization's factor."""
    decay = _per_member([s.get("weight_decay", 0.0) for s in settings], like)
    return [decay if f == 1.0 else decay * f for f in (factors or [1.0] * count)]


class StackedSGD:
    """torch.optim.SGD's update (momentum, dampening, nesterov, weight decay), with per-member settings.
    `lr_factors` / `decay_factors`: per parameter, the parameterization's (build/param.py; 1 when None)."""

    def __init__(self, params: list[torch.Tensor], settings: list[dict], lr_factors: Optional[list[float]] = None,
                 decay_factors: Optional[list[float]] = None) -> None:
        like = params[0]
        self.params = params
        self.lr_factors = lr_factors or [1.0] * len(params)
        self.momentum = _per_member([s.get("momentum", 0.0) for s in settings], like)
        self.dampening = _per_member([s.get("dampening", 0.0) for s in settings], like)
        self.weight_decay = _decays(settings, like, decay_factors, len(params))
        self.nesterov = torch.tensor([bool(s.get("nesterov", False)) for s in settings], device=like.device)
        self.uses_momentum = bool((self.momentum > 0).any())
        self.decays = any(bool((wd != 0).any()) for wd in self.weight_decay)  # else d is the gradient itself: no pass over it
        # State lives in tensors updated in place, so a captured CUDA graph can replay the step (graphs.py).
        self.buffers = [torch.zeros_like(p) for p in params] if self.uses_momentum else []
        self.started = torch.zeros((), dtype=torch.bool, device=like.device)  # a first step was taken

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        for i, p in enumerate(self.params):
            d = p.grad + _expand(self.weight_decay[i], p) * p if self.decays else p.grad
            if self.uses_momentum:
                mom, buf = _expand(self.momentum, p), self.buffers[i]
                # torch starts the buffer at the first gradient, without dampening.
                buf.copy_(torch.where(self.started, mom * buf + (1 - _expand(self.dampening, p)) * d, d))
                # With momentum 0 the buffer is the gradient itself: plain SGD, as torch does it.
                d = torch.where(_expand(self.nesterov, p), d + mom * buf, buf)
            rate = lr if self.lr_factors[i] == 1.0 else lr * self.lr_factors[i]
            p.addcmul_(_expand(rate, p), d, value=-1)  # p - lr * d in one pass, rounded as torch's add_(d, alpha=-lr)
        if self.uses_momentum:
            self.started.fill_(True)


class StackedAdam:
    """torch.optim.Adam's update (AdamW's decoupled decay for torch.optim.AdamW), per-member settings;
    the parameterization's factors as StackedSGD's."""

    def __init__(self, params: list[torch.Tensor], settings: list[dict], lr_factors: Optional[list[float]] = None,
                 decay_factors: Optional[list[float]] = None, decoupled: bool = False) -> None:
        like = params[0]
        self.params, self.decoupled = params, decoupled
        self.lr_factors = lr_factors or [1.0] * len(params)
        self.beta1 = _per_member([s["betas"][0] for s in settings], like)
        self.beta2 = _per_member([s["betas"][1] for s in settings], like)
        self.eps = _per_member([s["eps"] for s in settings], like)
        self.weight_decay = _decays(settings, like, decay_factors, len(params))
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.t = torch.zeros((), dtype=torch.float64, device=like.device)  # steps taken, on the device (graphs.py)

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        self.t += 1
        for p, m, v, decay, factor in zip(self.params, self.exp_avg, self.exp_avg_sq, self.weight_decay, self.lr_factors):
            b1, b2, eps, wd, rate = (_expand(x, p) for x in (self.beta1, self.beta2, self.eps, decay,
                                                             lr if factor == 1.0 else lr * factor))
            g = p.grad
            if self.decoupled:
                p.mul_(1 - rate * wd)
            else:
                g = g + wd * p
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g * (1 - b2))
            # Bias corrections in double, as torch computes them (in Python floats).
            correction1 = (1 - self.beta1.double() ** self.t).to(p.dtype)
            correction2 = (1 - self.beta2.double() ** self.t).sqrt().to(p.dtype)
            denom = v.sqrt() / _expand(correction2, p) + eps
            p -= rate / _expand(correction1, p) * m / denom


OPTIMIZERS = {
    "torch.optim.SGD": StackedSGD,
    "torch.optim.Adam": StackedAdam,
    "torch.optim.AdamW": functools.partial(StackedAdam, decoupled=True),
}
# The settings of torch's optimizers the stacked ones reproduce; the others (amsgrad, maximize, fused, ...)
# are allowed by the schema, which reads torch's signature, and must keep torch's default here.
REPRODUCED = {"torch.optim.SGD": ("momentum", "dampening", "weight_decay", "nesterov"),
              "torch.optim.Adam": ("betas", "eps", "weight_decay"),
              "torch.optim.AdamW": ("betas", "eps", "weight_decay")}


@functools.lru_cache(maxsize=None)  # once per optimizer, not once per job of a 1,024-job plan
def _defaults(target: str) -> dict:
    return {name: p.default for name, p in inspect.signature(resolve(target)).parameters.items()}


def check_reproduced(optim: dict) -> None:
    """A ConfigError for an optimizer setting a stacked group would not reproduce (checked before any group
    trains): the run would otherwise train with torch's default and record the setting it ignored."""
    target = optim["_target_"]
    defaults = _defaults(target)
    for key, value in optim.items():
        if key != "_target_" and key not in REPRODUCED[target] and value != defaults[key]:
            raise ConfigError(f"optim.{key}={show(value)}: the vectorized launcher's stacked {target} does not "
                              f"reproduce it (it reproduces {', '.join(REPRODUCED[target])}); "
                              f"run this sweep with hydra/launcher=basic")


# Rows of the test set per forward pass of evaluate_members, whatever the group's size: each member's
# test loss is then the same float32 sum of the same chunks, so a member's records do not depend on
# the group it was trained in (a resumed sweep regroups what is left; a cluster's groups differ in size).
EVAL_ROWS = 1000


@torch.no_grad()
def evaluate_members(net: StackedMLP, x: torch.Tensor, y: torch.Tensor, budget: Optional[int] = None) -> list:
    """Every member's Evaluation on (x, y): the same numbers as training.evaluate gives each alone.

    The test set goes through in chunks of EVAL_ROWS rows, and the members a slice at a time, so that
    the (members, rows, width) activations of a pass hold at most `budget` numbers: by default 2**22
    on the CPU (16 MB, below glibc's 32 MB limit for reusing freed memory: larger tensors are fresh
    pages every time, ~1/3 of the evaluation's time in page faults for 256 members) and 2**26 on a
    GPU (whose caching allocator reuses anything).
    """
    from initlab.train.loop import Evaluation

    if budget is None:
        budget = 2**22 if x.device.type == "cpu" else 2**26
    m = net.members
    width = max(w.shape[1] for w in net.weights)
    rows = min(len(y), EVAL_ROWS)
    at_once = max(1, min(m, budget // (rows * width)))  # members per pass
    loss = x.new_zeros(m)
    correct = x.new_zeros(m)
    parts = [(slice(start, min(m, start + at_once)), EvaluationPass(net.activation_names))
             for start in range(0, m, at_once)]
    for xs, ys in zip(x.split(rows), y.split(rows)):
        for members, stats in parts:
            k = members.stop - members.start
            taps: list = []
            out = net(xs.expand(k, *xs.shape), taps, members)
            loss[members] += F.cross_entropy(out.flatten(0, 1), ys.repeat(k), reduction="none").view(k, -1).sum(1)
            correct[members] += (out.argmax(2) == ys).sum(1)
            stats.add(taps)
    n = len(y)
    per_member = [[v for _, stats in parts for v in values(stats)] for values in (
        EvaluationPass.dead_fraction, EvaluationPass.saturated_fraction, EvaluationPass.dead_outputs)]
    return [Evaluation(*values) for values in zip((loss / n).tolist(), (correct / n).tolist(), *per_member)]
