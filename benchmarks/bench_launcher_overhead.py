"""The vectorized launcher's overhead per job, end to end through the command a user types.

    python benchmarks/bench_launcher_overhead.py [--small 16] [--large 256] [--repeat 5] [--extra 1024]

Times `initlab -m hydra/launcher=vectorized data=synthetic trainer.max_steps=1 trainer.seed=range(0,N)`
(one optimizer step per job: almost no training) from the start of the process to its exit, every
job folder and record written, for N = --small and --large; the overhead per job is
(t_large - t_small) / (large - small), which cancels start-up. Each sweep runs --repeat times,
the two sizes interleaved, and the fastest of each counts (this VM's timings vary by ~10 % from
run to run; the noise only adds).
--extra N also times one more sweep end to end. Issue floor: <= 20 ms per job on the 2-core CPU.
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


def sweep_seconds(jobs: int, extra: list[str]) -> float:
    """Wall seconds of one vectorized sweep of `jobs` jobs, in a fresh folder."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "initlab", "-m", "hydra/launcher=vectorized", "data=synthetic",
               "trainer.max_steps=1", "trainer.progress=false", f"trainer.seed=range(0,{jobs})",
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
    parser.add_argument("overrides", nargs="*", help="more overrides for every sweep")
    args = parser.parse_args()
    times: dict[int, list[float]] = {args.small: [], args.large: []}
    for _ in range(args.repeat):  # interleaved, so a drift in the machine's speed touches both sizes
        for n in times:
            times[n].append(sweep_seconds(n, args.overrides))
    small, large = min(times[args.small]), min(times[args.large])
    per_job = (large - small) / (args.large - args.small)
    print(f"{args.small} jobs: {small:.1f} s | {args.large} jobs: {large:.1f} s | "
          f"overhead per job: {1000 * per_job:.1f} ms (floor 20 ms)")
    for n in args.extra:
        print(f"{n} jobs end to end: {sweep_seconds(n, args.overrides):.1f} s")


if __name__ == "__main__":
    main()
