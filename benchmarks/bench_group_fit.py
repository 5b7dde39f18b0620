"""A stacked group's training alone: GroupTraining.fit of 26 founding nets (784-200-200-10, the CPU's
group size) for 60 steps on MNIST, recording on, best of 3. No start-up, no build, no records written.

    python benchmarks/bench_group_fit.py [--device cpu] [--members 26] [--steps 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config  # noqa: E402

from initlab.config.check import validate  # noqa: E402
from initlab.stacked.group import GroupTraining  # noqa: E402

INITS = ["kaiming_normal", "xavier_uniform", "orthogonal", "lecun_normal"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--members", type=int, default=26)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    members = [validate(config(f"init={INITS[k % len(INITS)]}", f"trainer.seed={k}", f"trainer.max_steps={args.steps}",
                               f"trainer.device={args.device}", "trainer.jacobian_inputs=0"))
               for k in range(args.members)]
    times = []
    for _ in range(3):
        group = GroupTraining(members, torch.device(args.device))
        started = time.perf_counter()
        group.fit()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    print(f"{args.members} founding nets x {args.steps} steps on {args.device} (torch {torch.__version__}): "
          f"fit {min(times):.2f} s, best of " + ", ".join(f"{t:.2f}" for t in times))


if __name__ == "__main__":
    main()
