"""Plain-torch witnesses for the diagnosis catalogue's cases added with the labels by mechanism.

    python benchmarks/catalogue_witness.py

The catalogue (benchmarks/diagnosis_catalogue.yaml) says which label each case deserves; a label
checked only against initlab's own records would prove nothing. This script imports no initlab: it
reads MNIST with torchvision, builds each net with torch.nn, trains it with torch.optim, and prints the
facts that make the label the mechanism to fix (a layer dead for every sample, weight gradients that are
exactly zero, the logits' spread at init, the first gradients, a non-finite loss, ...). The output goes
to stdout and to benchmarks/results/catalogue-witness.md.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

RESULTS = Path(__file__).parent / "results" / "catalogue-witness.md"
ROOT = os.environ.get("INITLAB_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
LN10 = math.log(10)


def mnist(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    ds = torchvision.datasets.MNIST(ROOT, train=train, download=False)
    return ((ds.data.float() / 255 - 0.1307) / 0.3081).flatten(1), ds.targets


def mlp(depth: int, width: int = 200, act: type = nn.ReLU) -> nn.Sequential:
    sizes = [784] + [width] * depth + [10]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < depth:
            layers.append(act())
    return nn.Sequential(*layers)


def linears(net: nn.Sequential) -> list[nn.Linear]:
    return [m for m in net if isinstance(m, nn.Linear)]


def init(net: nn.Sequential, weight, bias) -> nn.Sequential:
    with torch.no_grad():
        for layer in linears(net):
            weight(layer.weight)
            bias(layer.bias)
    return net


def forward_stats(net: nn.Sequential, x: torch.Tensor) -> tuple[list[float], list[float], list[float]]:
    """Per linear layer: the pre-activation std; per hidden layer: the fraction of units that output 0 for
    every sample, and the fraction of outputs in tanh/sigmoid's flat region (|tanh| > 0.99, sigmoid < 0.01 or > 0.99)."""
    pre_std, dead, flat = [], [], []
    h = x
    with torch.no_grad():
        for m in net:
            h = m(h)
            if isinstance(m, nn.Linear):
                pre_std.append(float(h.std()))
            elif isinstance(m, nn.ReLU):
                dead.append(float((h == 0).all(0).float().mean()))
            elif isinstance(m, nn.Tanh):
                flat.append(float((h.abs() > 0.99).float().mean()))
            elif isinstance(m, nn.Sigmoid):
                flat.append(float(((h < 0.01) | (h > 0.99)).float().mean()))
    return pre_std, dead, flat


def train(net: nn.Sequential, optimizer, data, steps: int = 300, batch: int = 200, seed: int = 0) -> dict:
    """Plain SGD/Adam steps over shuffled batches: the loss per step, each step's weight-gradient norms."""
    x, y = data
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    losses, grads, ratios = [], [], []
    for step in range(steps):
        pick = order[(step * batch) % len(y):][:batch]
        loss = nn.functional.cross_entropy(net(x[pick]), y[pick])
        optimizer.zero_grad()
        loss.backward()
        grads.append([float(l.weight.grad.norm()) for l in linears(net)])
        before = [l.weight.detach().clone() for l in linears(net)]
        optimizer.step()
        ratios.append(max(float((l.weight.detach() - b).norm() / b.norm()) for l, b in zip(linears(net), before)))
        losses.append(float(loss))
        if not math.isfinite(losses[-1]):
            break
    return {"losses": losses, "grads": grads, "ratios": ratios}


def accuracy(net: nn.Sequential, test) -> float:
    with torch.no_grad():
        return float((net(test[0]).argmax(1) == test[1]).float().mean())


def kaiming(w):
    nn.init.kaiming_normal_(w, nonlinearity="relu")


def constant(v):
    return lambda b: nn.init.constant_(b, v)


def zeros(b):
    nn.init.zeros_(b)


def witnesses(train_data, test) -> list[tuple[str, str]]:
    probe = train_data[0][:1000]
    rows = []

    torch.manual_seed(0)
    net = init(mlp(2), kaiming, constant(-3.0))
    _, dead, _ = forward_stats(net, probe)
    r = train(net, torch.optim.SGD(net.parameters(), lr=0.01), train_data)
    rows.append(("bias -3, founding net", f"dead units per hidden layer at init {dead}; largest weight-gradient norm over "
                 f"{len(r['grads'])} steps {max(max(g) for g in r['grads'])}; loss {r['losses'][0]:.5f} -> "
                 f"{r['losses'][-1]:.5f}; test accuracy {accuracy(net, test):.2%}"))

    torch.manual_seed(0)
    net = init(mlp(5), kaiming, lambda b: nn.init.normal_(b, -2.0, 0.5))
    _, dead, _ = forward_stats(net, probe)
    r = train(net, torch.optim.SGD(net.parameters(), lr=0.01), train_data)
    rows.append(("bias N(-2, 0.5^2), 5 ReLU layers", f"dead units per hidden layer at init {dead}; largest weight-gradient "
                 f"norm over {len(r['grads'])} steps {max(max(g) for g in r['grads'])}; test accuracy {accuracy(net, test):.2%}"))

    born_dead = 0
    for seed in range(100):  # Lu et al. 2019: the probability that a deep narrow ReLU net is born dead
        torch.manual_seed(seed)
        _, dead, _ = forward_stats(init(mlp(10, width=2), kaiming, zeros), probe)
        born_dead += max(dead) == 1.0
    rows.append(("width 2, 10 ReLU layers", f"{born_dead} of 100 seeds have a hidden layer dead for all 1,000 probe "
                 f"images at init (Kaiming weights, zero biases)"))

    torch.manual_seed(0)
    net = init(mlp(2), lambda w: nn.init.uniform_(w, 0.0, 1.0), zeros)
    x, y = train_data[0][:200], train_data[1][:200]
    rows.append(("uniform U(0, 1), ReLU", f"first batch loss {float(nn.functional.cross_entropy(net(x), y)):.4g} = "
                 f"{float(nn.functional.cross_entropy(net(x), y)) / LN10:.3g}x ln 10"))

    for name, depth in (("N(0, 0.01^2), 2 ReLU layers", 2),):
        out = []
        for label, weight in (("N(0, 0.01^2)", lambda w: nn.init.normal_(w, 0.0, 0.01)), ("Kaiming", kaiming)):
            torch.manual_seed(0)
            net = init(mlp(depth), weight, zeros)
            pre, _, _ = forward_stats(net, probe)
            r = train(net, torch.optim.SGD(net.parameters(), lr=0.01), train_data)
            out.append(f"{label}: pre-activation std at init {[round(v, 4) for v in pre]}, first weight-gradient norms "
                       f"{[round(v, 4) for v in r['grads'][0]]}, test accuracy after 300 steps {accuracy(net, test):.2%}")
        rows.append((name, "; ".join(out)))

    torch.manual_seed(0)
    net = mlp(5)  # nn.Linear's own init: U(+-1/sqrt(fan_in)) weights and biases
    pre, _, _ = forward_stats(net, probe)
    r = train(net, torch.optim.SGD(net.parameters(), lr=0.01), train_data)
    rows.append(("nn.Linear default, 5 ReLU layers", f"pre-activation std at init {[round(v, 4) for v in pre]}; first "
                 f"weight-gradient norms at most {max(r['grads'][0]):.3g}; test accuracy after 300 steps "
                 f"{accuracy(net, test):.2%}"))

    for name, scale, depth, act in (("tanh, 50 layers, ordered phase (sigma_w^2 = 1)", 1.0, 50, nn.Tanh),
                                    ("tanh, 50 layers, chaotic phase (sigma_w^2 = 4)", 4.0, 50, nn.Tanh),
                                    ("sigmoid, 10 layers, Xavier", None, 10, nn.Sigmoid)):
        torch.manual_seed(0)
        if scale is None:
            weight, bias = nn.init.xavier_normal_, zeros
        else:
            def weight(w, s=scale):
                nn.init.trunc_normal_(w, 0.0, 1.0, -2.0, 2.0)
                w.mul_(math.sqrt(s / w.shape[1]) / 0.8796)  # unit-variance truncated normal, as variance_scaling
            bias = lambda b: nn.init.normal_(b, 0.0, 0.2236)  # noqa: E731
        net = init(mlp(depth, act=act), weight, bias)
        r = train(net, torch.optim.SGD(net.parameters(), lr=0.01), train_data, steps=100)
        first = r["grads"][0]
        _, _, flat = forward_stats(net, probe)
        rows.append((name, f"at init, weight-gradient norm of layer 0 {first[0]:.3g} and of the output layer "
                     f"{first[-1]:.3g} (ratio {first[0] / first[-1]:.3g}); after 100 steps, layer 0's "
                     f"{r['grads'][-1][0]:.3g} against the output's {r['grads'][-1][-1]:.3g}; flat-region outputs "
                     f"of hidden layer 0 after 100 steps {flat[0]:.0%}, of the last {flat[-1]:.0%}"))

    torch.manual_seed(0)
    net = init(mlp(2), kaiming, zeros)
    r = train(net, torch.optim.Adam(net.parameters(), lr=1e-6), train_data)
    fall = (sum(r["losses"][:50]) - sum(r["losses"][-50:])) / sum(r["losses"][:50])
    rows.append(("Adam lr 1e-6", f"median update ratio ||dW||/||W|| {sorted(r['ratios'])[len(r['ratios']) // 2]:.3g}; "
                 f"the loss fell {fall:.1%} over 300 steps; test accuracy {accuracy(net, test):.2%}"))

    torch.manual_seed(0)
    net = init(mlp(2), kaiming, zeros)
    r = train(net, torch.optim.SGD(net.parameters(), lr=3.0), train_data)
    ended = (f"non-finite at step {len(r['losses']) - 1}" if not math.isfinite(r["losses"][-1])
             else "the loss stayed finite")
    rows.append(("SGD lr 3", f"losses {[round(v, 3) for v in r['losses'][:4]]} ...; {ended}"))
    return rows


def main() -> None:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    started = time.perf_counter()
    rows = witnesses(mnist(True), mnist(False))
    lines = [f"- **{name}**: {fact}" for name, fact in rows]
    print("\n".join(lines))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("`python benchmarks/catalogue_witness.py` (plain torch, no initlab; 2-core CPU, real MNIST; "
                       f"{time.perf_counter() - started:.0f} s)\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
