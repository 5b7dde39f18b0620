"""How long the grid's 1,024 jobs take to plan: from process start to the vectorized launcher's
plan (the stacked groups), nothing trained, with the phases Hydra and the launcher go through.

    python benchmarks/bench_plan.py [override ...]
    PLAN_SEEDS='trainer.seed=range(0,313)' python benchmarks/bench_plan.py    # 10,016 jobs

The grid of bench_gpu_grid.py (8 inits x 4 learning rates x 32 seeds) through `initlab -m
hydra/launcher=vectorized`, in this process: the imports, the sweeper's check of the batch
(Hydra's validate_batch_is_legal: a full composition per distinct set of group choices, every
other job's config derived from one, sweep_configs.py), and the launcher's `_jobs` (each job's
settings checked and its folder named). The process stops once the plan is made.
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from pathlib import Path

STARTED = time.perf_counter()
sys.path.insert(0, str(Path(__file__).parent))
from bench_gpu_grid import INITS, LRS  # noqa: E402

from hydra.plugins import sweeper  # noqa: E402

import initlab.sweep.job_configs as sweep_configs  # noqa: E402
import initlab.sweep.vectorized as vectorized  # noqa: E402

spent: dict[str, float] = defaultdict(float)
calls: dict[str, int] = defaultdict(int)


def timed(owner, name: str, label: str) -> None:
    fn = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - started
            calls[label] += 1

    setattr(owner, name, wrapper)


def plan_only(self, job_overrides, nums):
    self.start(job_overrides, nums)
    print(f"imports {IMPORTED:.2f} s; process start to the plan of {len(job_overrides)} jobs "
          f"{time.perf_counter() - STARTED:.2f} s (the interpreter's own start not included)")
    for label, seconds in spent.items():
        print(f"  {seconds:6.2f} s  {calls[label]:5d} call(s)  {label}")
    sys.stdout.flush()
    os._exit(0)


timed(sweeper.Sweeper, "validate_batch_is_legal", "the sweeper's check of the batch")
timed(sweep_configs.SweepConfigs, "_compose", "  of which full compositions")
timed(sweep_configs, "derive", "  of which configs derived from one")
timed(vectorized.VectorizedSweep, "_jobs", "the launcher's jobs (settings checked, folders named)")
vectorized.VectorizedSweep.run_jobs = plan_only

from initlab.cli import main  # noqa: E402

IMPORTED = time.perf_counter() - STARTED

if __name__ == "__main__":
    os.environ.setdefault("INITLAB_DATA", str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    sys.argv = ["initlab", "-m", "hydra/launcher=vectorized", f"init={INITS}", f"lr.value={LRS}",
                os.environ.get("PLAN_SEEDS", "trainer.seed=range(0,32)"), "trainer.progress=false", "hydra.sweep.dir=/tmp/initlab-bench-plan",
                *sys.argv[1:]]
    main()
