"""The vectorized launcher's overhead per job, end to end through the command a user types.

    python benchmarks/bench_launcher_overhead.py [--small 16] [--large 256] [--repeat 5] [--seeds-only] [--extra 1024]

Times `initlab -m hydra/launcher=vectorized data=synthetic trainer.max_steps=1 ...` (one optimizer
step per job: almost no training) from the start of the process to its exit, every job folder and
record written. The large sweep is what users sweep: 4 inits x 4 learning rates x (large / 16) seeds
(--seeds-only: trainer.seed=range(0,large)); the small one is --small seeds of one init and one rate.
The overhead per job is (t_large - t_small) / (large - small), which cancels start-up. Each sweep runs
--repeat times, the two sizes interleaved, and the fastest of each counts (this VM's timings vary by
~10 % from run to run; the noise only adds). The same process times a hand-written SGD step of the
founding net (784-200-200-10, batch 200: forward, backward, update), so the overhead is also given in
those steps: a figure that means the same on a slow day and a fast one.
--extra N also times one more sweep end to end. Issue floors: <= 20 ms and <= 10 hand-loop steps per job.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


INITS = "kaiming_normal,xavier_normal,orthogonal,lecun_normal"
RATES = "0.001,0.01,0.03,0.1"


def grid(jobs: int, seeds_only: bool) -> list[str]:
    """The overrides of a sweep of `jobs` jobs: 4 inits x 4 rates x jobs/16 seeds, or `jobs` seeds."""
    if seeds_only or jobs % 16:
        return [f"trainer.seed=range(0,{jobs})"]
    return [f"init={INITS}", f"lr.value={RATES}", f"trainer.seed=range(0,{jobs // 16})"]


def hand_step_seconds(repeat: int = 300) -> float:
    """Median seconds of one hand-written SGD step of the founding net on a batch of 200 (torch only)."""
    import torch

    torch.manual_seed(0)
    w = [torch.randn(200, 784) * 0.05, torch.randn(200, 200) * 0.1, torch.randn(10, 200) * 0.1]
    b = [torch.zeros(200), torch.zeros(200), torch.zeros(10)]
    params = [p.requires_grad_() for p in w + b]
    x, y = torch.randn(200, 784), torch.randint(0, 10, (200,))
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        h = torch.relu(x @ w[0].T + b[0])
        h = torch.relu(h @ w[1].T + b[1])
        loss = torch.nn.functional.cross_entropy(h @ w[2].T + b[2], y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 0.01 * g
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def sweep_seconds(jobs: int, extra: list[str], seeds_only: bool = True) -> float:
    """Wall seconds of one vectorized sweep of `jobs` jobs, in a fresh folder."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "initlab", "-m", "hydra/launcher=vectorized", "data=synthetic",
               "trainer.max_steps=1", "trainer.progress=false", *grid(jobs, seeds_only),
               f"hydra.sweep.dir={tmp}/sweep", *extra]
        started = time.perf_counter()
        result = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env={**os.environ})
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(result.stderr[-3000:])
        written = len(list(Path(tmp, "sweep").glob("*/summary.json")))
        if written != jobs:
            raise SystemExit(f"{written} of {jobs} jobs written")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=16)
    parser.add_argument("--large", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--extra", type=int, nargs="*", default=[])
    parser.add_argument("--seeds-only", action="store_true", help="the large sweep over seeds alone (the easy case)")
    parser.add_argument("overrides", nargs="*", help="more overrides for every sweep")
    args = parser.parse_args()
    times: dict[int, list[float]] = {args.small: [], args.large: []}
    steps = []
    for _ in range(args.repeat):  # interleaved, so a drift in the machine's speed touches both sizes
        for n in times:
            times[n].append(sweep_seconds(n, args.overrides, seeds_only=n == args.small or args.seeds_only))
        steps.append(hand_step_seconds())
    small, large = min(times[args.small]), min(times[args.large])
    per_job, step = (large - small) / (args.large - args.small), min(steps)
    what = "seeds" if args.seeds_only else "4 inits x 4 rates x seeds"
    print(f"{args.small} jobs: {small:.1f} s | {args.large} jobs ({what}): {large:.1f} s | "
          f"overhead per job: {1000 * per_job:.1f} ms (floor 20 ms) = {per_job / step:.1f} hand-written SGD steps "
          f"of the founding net ({1000 * step:.2f} ms each; floor 10)")
    for n in args.extra:
        print(f"{n} jobs end to end: {sweep_seconds(n, args.overrides):.1f} s")


if __name__ == "__main__":
    main()
