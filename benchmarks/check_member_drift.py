"""How far a stacked member's records drift from its ordinary run's: the largest relative difference
over every per-layer value (finite, |value| > 1e-6) of 4 members (different inits, learning rates and
schedules; a small synthetic net, every step recorded), for SGD over 20 steps and Adam over 4 and 20.

    python benchmarks/check_member_drift.py [--device cpu]

Adam amplifies an ulp: a weight whose gradient is rounding noise moves by ~lr either way, which is
why tests/test_vectorized.py compares Adam members over 4 steps only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config  # noqa: E402

from initlab.config.check import validate  # noqa: E402
from initlab.stacked.group import GroupTraining  # noqa: E402
from initlab.train.runner import run  # noqa: E402

SMALL = ("data=synthetic", "data.source.num_train=1000", "data.source.num_test=200", "model.width=48",
         "model.depth=3", "trainer.log_every=1")
MEMBERS = [("init=xavier_uniform", "lr.value=0.05"), ("init=kaiming_normal", "lr.value=0.01", "trainer.seed=3"),
           ("init=orthogonal", "lr=warmup", "lr.value=0.1", "lr.warmup_epochs=2"),
           ("init=normal", "init.std=0.1", "lr=cosine", "lr.value=0.02")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for optim in (("optim=sgd", "trainer.max_steps=20"), ("optim=adam", "trainer.max_steps=4"),
                  ("optim=adam", "trainer.max_steps=20")):
        configs = [config(*SMALL, *optim, *m, f"trainer.device={args.device}") for m in MEMBERS]
        group = GroupTraining([validate(c) for c in configs], torch.device(args.device))
        group.fit()
        worst = 0.0
        for k, c in enumerate(configs):
            ordinary = run(c, output_dir=tempfile.mkdtemp())
            a = group.outcome(k).layers.sort_values(["metric", "step", "layer"]).value.to_numpy()
            b = ordinary.layers.sort_values(["metric", "step", "layer"]).value.to_numpy()
            ok = np.isfinite(a) & np.isfinite(b) & (np.abs(b) > 1e-6)
            worst = max(worst, float(np.max(np.abs(a[ok] - b[ok]) / np.abs(b[ok]))))
        print(f"{' '.join(optim)}: largest relative difference, member against ordinary run: {worst:.3g}")


if __name__ == "__main__":
    main()
