"""Benchmark 4: sweep throughput, configurations one after another vs the vectorized launcher's
stacked groups. The founding net (784-200-200-10, ReLU, SGD, batch 200) on MNIST, recording on.

    python benchmarks/bench_sweep.py [--configs 8] [--epochs 1] [--device cpu|cuda] [--sequential 8]

The configurations are an init x lr x seed grid. The sequential side trains `--sequential` of them
(each exactly as `initlab` would, data already loaded) and reports seconds per configuration; the
vectorized side trains all `--configs` as stacked groups of at most `--group` members.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config, timed  # noqa: E402

from initlab.config.check import validate  # noqa: E402
from initlab.stacked.group import GroupTraining  # noqa: E402
from initlab.train.loop import Training  # noqa: E402

INITS = ["kaiming_normal", "xavier_uniform", "orthogonal", "lecun_normal", "torch_default", "kaiming_uniform",
         "xavier_normal", "trunc_normal"]
LRS = [0.1, 0.05, 0.02, 0.01]


def grid(n: int, epochs: int, device: str) -> list[dict]:
    combos = itertools.islice(itertools.product(range(1000), INITS, LRS), n)
    return [validate(config(f"init={init}", f"lr.value={lr}", f"trainer.seed={seed}", f"trainer.epochs={epochs}",
                            f"trainer.device={device}")) for seed, init, lr in combos]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", type=int, default=8)
    parser.add_argument("--sequential", type=int, default=None, help="how many to time one by one (default: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--group", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    settings = grid(args.configs, args.epochs, args.device)
    Training(settings[0], device)  # load (and cache) the data once, outside the timings
    warm = GroupTraining(settings[:2], device)
    warm.fit()

    n_seq = args.sequential or args.configs
    seq_total = sum(timed(Training(s, device).fit)[0] for s in settings[:n_seq])
    per_seq = seq_total / n_seq

    vec_total, statuses = 0.0, []
    for start in range(0, len(settings), args.group):
        part = settings[start:start + args.group]
        seconds, group = timed(lambda: _fit(GroupTraining(part, device)))
        vec_total += seconds
        statuses += group.status
    per_vec = vec_total / len(settings)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; {args.configs} configurations x {args.epochs} epoch(s), recording every 10 steps")
    print(f"  sequential:  {per_seq:8.3f} s per configuration (timed {n_seq})")
    print(f"  vectorized:  {per_vec:8.3f} s per configuration ({vec_total:.1f} s for all {args.configs}, "
          f"groups of <= {args.group}; {statuses.count('completed')} completed)")
    print(f"  speed-up:    {per_seq / per_vec:8.1f}x")


def _fit(group: GroupTraining) -> GroupTraining:
    group.fit()
    return group


if __name__ == "__main__":
    main()
