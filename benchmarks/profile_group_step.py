"""Where a stacked group's step spends its time on a GPU: a kernel table from torch.profiler (the
eager loop, whose kernels a CUDA graph replays unchanged), the wall time per step with and
without CUDA graphs, and two ways to lay out the stacked matmuls.

    python benchmarks/profile_group_step.py [--members 256] [--steps 30] [--tf32]

The founding net on MNIST, SGD, recording every 10 steps (as the 1,024-configuration grid).
Build-time measurements (theory, Jacobian) are off here: this is about the training step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import config  # noqa: E402

from initlab.config.check import validate  # noqa: E402
from initlab.stacked.group import GroupTraining  # noqa: E402

INITS = ["kaiming_normal", "xavier_uniform", "orthogonal", "lecun_normal"]


def group(members: int, steps: int, graphs: bool, tf32: bool) -> GroupTraining:
    cfgs = [validate(config(f"init={INITS[k % 4]}", f"lr.value={0.01 * (1 + k % 4)}", f"trainer.seed={k}",
                            f"trainer.max_steps={steps}", "trainer.jacobian_inputs=0", "trainer.device=cuda",
                            f"trainer.cuda_graphs={str(graphs).lower()}", f"trainer.tf32={str(tf32).lower()}"))
            for k in range(members)]
    return GroupTraining(cfgs, torch.device("cuda"))


def per_step(members: int, steps: int, graphs: bool, tf32: bool) -> float:
    """Seconds per step of fit() (an epoch's end evaluation included once), after a warm-up fit."""
    group(members, 20, graphs, tf32).fit()
    g = group(members, steps, graphs, tf32)
    torch.cuda.synchronize()
    started = time.perf_counter()
    g.fit()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


def layouts(members: int, tf32: bool, repeats: int = 20) -> str:
    """Forward and backward of the stacked 784-200-200-10 net, batch 200: x @ W^T (initlab's
    baddbmm; W's gradient comes out transposed) against W @ x^T (feature-major activations)."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    dev = torch.device("cuda")
    sizes = [(200, 784), (200, 200), (10, 200)]
    ws = [torch.randn(members, o, i, device=dev).mul_(i ** -0.5).requires_grad_() for o, i in sizes]
    bs = [torch.zeros(members, o, device=dev, requires_grad=True) for o, _ in sizes]
    x = torch.randn(members, 200, 784, device=dev)
    y = torch.randint(10, (members * 200,), device=dev)

    def rows():
        h = x
        for k, (w, b) in enumerate(zip(ws, bs)):
            h = torch.baddbmm(b.unsqueeze(1), h, w.mT)
            h = h.relu() if k < 2 else h
        return h

    def columns():
        h = x.mT
        for k, (w, b) in enumerate(zip(ws, bs)):
            h = torch.baddbmm(b.unsqueeze(2), w, h)
            h = h.relu() if k < 2 else h
        return h.mT

    out = []
    for name, fwd in (("x @ W^T", rows), ("W @ x^T", columns)):
        for p in ws + bs:
            p.grad = torch.zeros_like(p)
        times = []
        for _ in range(repeats + 3):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for p in ws + bs:
                p.grad.zero_()
            F.cross_entropy(fwd().flatten(0, 1), y).backward()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        out.append(f"  {name}: {sorted(times[3:])[repeats // 2]:.2f} ms forward + backward (median of {repeats})")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--tf32", action="store_true")
    args = parser.parse_args()
    m, tf32 = args.members, args.tf32
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {m} members, {'TF32' if tf32 else 'FP32'}",
          flush=True)
    # The kernel table first: it is what the device time is for (one run of this script did not finish).
    g = group(m, 20, False, tf32)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        g.fit()
        torch.cuda.synchronize()
    print("eager, 20 steps (2 recorded) and one evaluation, by GPU time:")
    averages = prof.key_averages()
    for key in ("self_device_time_total", "self_cuda_time_total"):  # the name depends on torch's version
        try:
            print(averages.table(sort_by=key, row_limit=22, max_name_column_width=60), flush=True)
            break
        except (AttributeError, KeyError, ValueError):
            continue
    for graphs in (True, False):
        print(f"  {'CUDA graphs' if graphs else 'eager'}: {1000 * per_step(m, args.steps, graphs, tf32):.2f} ms per step",
              flush=True)
    print(layouts(m, tf32))


if __name__ == "__main__":
    main()
