"""Correctness on a GPU: same seed -> identical tables; a stacked member follows its ordinary run.

    python benchmarks/check_cuda.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config  # noqa: E402

from initlab.config import validate  # noqa: E402
from initlab.group import GroupTraining  # noqa: E402
from initlab.train import run  # noqa: E402


def main() -> None:
    assert torch.cuda.is_available()
    tmp = Path(tempfile.mkdtemp())
    args = ("trainer.max_steps=300", "trainer.device=auto")
    a, b = run(config(*args), output_dir=tmp / "a"), run(config(*args), output_dir=tmp / "b")
    c = run(config(*args, "trainer.seed=1"), output_dir=tmp / "c")
    same = a.layers.equals(b.layers) and a.curves.equals(b.curves)
    print(f"device {a.summary['device']}: same seed identical tables: {same}; "
          f"other seed differs: {not a.layers.value.equals(c.layers.value)}")
    members = [("init=xavier_uniform", "lr.value=0.05"), ("init=kaiming_normal", "trainer.seed=3"),
               ("init=orthogonal", "lr=warmup", "lr.value=0.1")]
    cfgs = [config("trainer.max_steps=20", "trainer.log_every=1", *m) for m in members]
    group = GroupTraining([validate(x) for x in cfgs], torch.device("cuda"))
    group.fit()
    worst = 0.0
    for k, cfg in enumerate(cfgs):
        plain = run(cfg, output_dir=tmp / f"m{k}").layers.sort_values(["metric", "step", "layer"], ignore_index=True)
        mine = group.outcome(k).layers.sort_values(["metric", "step", "layer"], ignore_index=True)
        assert len(plain) == len(mine)
        rel = ((mine.value - plain.value).abs() / (plain.value.abs() + 1e-6)).max()
        worst = max(worst, float(rel))
    print(f"stacked members vs ordinary runs, 20 steps on the GPU: largest relative difference {worst:.2e}")
    print("default run on the GPU:", {k: round(v, 4) for k, v in a.metrics.items()})


if __name__ == "__main__":
    main()
