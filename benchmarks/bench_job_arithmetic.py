"""The arithmetic one job of the overhead benchmark cannot skip, in plain torch and numpy, in hand-step units.

    python benchmarks/bench_job_arithmetic.py [--repeat 50] [--members 25]

bench_launcher_overhead.py counts, per job of a one-step sweep, everything the launcher does
beyond start-up, and gives it in hand-written SGD steps of the founding net (784-200-200-10,
batch 200). Part of that is arithmetic every job's records need whoever writes the code: this
script times it without initlab, each piece as an ordinary run of the default config does it:
- drawing the net: three nn.Linear (torch draws their default init) and kaiming_normal_ over
  each weight (initlab's build_model draws the same numbers in the same order);
- the one SGD step (the unit itself) and the statistics of its log step, left out here (they are
  initlab's own);
- the Jacobian spectrum at init (trainer.jacobian_inputs=2): J J^T in float64 for two inputs, built
  as K <- D W K W^T D (W1 W1^T alone is 200 x 784 x 200 multiply-adds), and its eigenvalues (the
  launcher computes these on a thread while the group trains: on 2 cores they still take a core);
- the evaluation after the epoch: the forward pass of data=synthetic's 1,000 test samples.
Each piece is timed for `--members` nets at once where the launcher batches them (the Gram
matrices and the evaluation, as a stacked group does), per net otherwise; the median of
`--repeat` rounds, per job. The sum is a floor under the overhead benchmark's per-job figure on
the same machine: what is left above it is initlab's own work (records, diagnosis, theory, the
Hydra job folder, the sweep's bookkeeping).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_launcher_overhead import hand_step_seconds  # noqa: E402  (the same unit as the overhead benchmark)
from common import timed  # noqa: E402

SIZES = (784, 200, 200, 10)


def median_seconds(fn, repeat: int) -> float:
    fn()  # once to warm up
    return statistics.median(timed(fn)[0] for _ in range(repeat))


def draw_net() -> list[torch.Tensor]:
    layers = [torch.nn.Linear(a, b) for a, b in zip(SIZES[:-1], SIZES[1:])]
    for layer in layers:
        torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        torch.nn.init.zeros_(layer.bias)
    return [layer.weight.detach() for layer in layers]


def jacobian_grams(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """J J^T (float64) of d h2 / d x at each row of x for every member: weights are (members, out, in)."""
    w1, w2 = weights[0].double(), weights[1].double()
    h1 = torch.einsum("moi,ni->mno", weights[0], x)  # (members, inputs, 200)
    h2 = torch.einsum("moi,mni->mno", weights[1], torch.relu(h1))
    d1, d2 = (h1 > 0).double(), (h2 > 0).double()
    k = (w1 @ w1.transpose(1, 2)).unsqueeze(1)  # (members, 1, 200, 200)
    k = d1[..., :, None] * k * d1[..., None, :]
    k = w2.unsqueeze(1) @ k @ w2.transpose(1, 2).unsqueeze(1)
    return d2[..., :, None] * k * d2[..., None, :]


def singular_values(grams: torch.Tensor) -> np.ndarray:
    return np.sqrt(np.clip(np.linalg.eigvalsh(grams.numpy()), 0, None))


def evaluate(weights: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m = weights[0].shape[0]
    h = x.expand(m, *x.shape)
    for w in weights[:-1]:
        h = torch.relu(torch.bmm(h, w.transpose(1, 2)))
    out = torch.bmm(h, weights[-1].transpose(1, 2))
    return (out.argmax(2) == y).float().mean(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--members", type=int, default=25, help="nets per stacked group (the overhead grid's ~25)")
    args = parser.parse_args()
    m = args.members
    torch.manual_seed(0)
    stacked = [torch.stack(ws) for ws in zip(*[draw_net() for _ in range(m)])]
    inputs, test_x, test_y = torch.randn(2, 784), torch.randn(1000, 784), torch.randint(0, 10, (1000,))

    grams = jacobian_grams(stacked, inputs)
    step = hand_step_seconds()
    pieces = {
        "drawing the net (3 nn.Linear + kaiming_normal_)": median_seconds(draw_net, args.repeat),
        "Jacobian at init: J J^T, 2 inputs, float64": median_seconds(lambda: jacobian_grams(stacked, inputs), args.repeat) / m,
        "Jacobian at init: its eigenvalues (numpy)": median_seconds(lambda: singular_values(grams), args.repeat) / m,
        "evaluation (1,000 test samples)": median_seconds(lambda: evaluate(stacked, test_x, test_y), args.repeat) / m,
        "the SGD step itself": step,
    }
    total = sum(pieces.values())
    print(f"hand-written SGD step of the founding net: {1000 * step:.2f} ms; per job, {m} nets a group:")
    for name, seconds in pieces.items():
        print(f"  {name:50s} {1000 * seconds:6.2f} ms = {seconds / step:4.1f} hand steps")
    print(f"  {'arithmetic a job cannot skip':50s} {1000 * total:6.2f} ms = {total / step:4.1f} hand steps")


if __name__ == "__main__":
    main()
