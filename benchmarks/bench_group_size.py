"""The vectorized launcher's group size on the CPU: wall time, kernel time and page faults.

    python benchmarks/bench_group_size.py [--jobs 256] [--steps 40] [--sizes 16 32 48 96 256]

Runs `initlab -m hydra/launcher=vectorized data=synthetic trainer.max_steps=STEPS
trainer.seed=range(0,JOBS) hydra.launcher.max_group_size=SIZE` end to end for each size (and
once with the launcher's own choice, "auto"), and reports each run's wall time, the child's
user and system CPU time and its minor page faults. Stacked tensors above glibc's 32 MB mmap
threshold are fresh pages at every step: that is what initlab.sweep.vectorized.CPU_TENSOR_BYTES avoids.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time


def run(jobs: int, steps: int, size: str) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "initlab", "-m", "hydra/launcher=vectorized", "data=synthetic",
               f"trainer.max_steps={steps}", "trainer.progress=false", f"trainer.seed=range(0,{jobs})",
               f"hydra.sweep.dir={tmp}/sweep"] + ([] if size == "auto" else [f"hydra.launcher.max_group_size={size}"])
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env={**os.environ})
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            raise SystemExit(result.stderr[-3000:])
        return (wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime,
                after.ru_minflt - before.ru_minflt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--sizes", nargs="*", default=["16", "32", "48", "96", "256", "auto"])
    args = parser.parse_args()
    print(f"{args.jobs} founding nets (784-200-200-10) x {args.steps} steps, synthetic data, 2 threads")
    print("group size | wall s | user s | sys s | minor page faults")
    for size in args.sizes:
        wall, user, sys_, faults = run(args.jobs, args.steps, size)
        print(f"{size:>10} | {wall:6.1f} | {user:6.1f} | {sys_:5.1f} | {faults:,}")


if __name__ == "__main__":
    main()
