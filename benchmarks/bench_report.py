"""A large sweep's report, end to end through the command a user types.

    python benchmarks/bench_report.py [--sweep DIR] [--repeat 3]

Makes (once, into --sweep; default /tmp/initlab-bench-report) a 1,024-run sweep with the vectorized
launcher: 8 inits x 4 learning rates x depth 2 and 6 x 16 seeds on synthetic data, 20 steps each,
statistics every 5 steps (192,218 layer rows). Then times `initlab-report SWEEP --out OUT` from the
start of the process to its exit: reading every run folder, the tables, every figure and
report.md (ten figures for this sweep). Prints each time and the fastest (this VM's timings vary by ~10 %).
Issue floor: a 1,024-run report in under 10 s on the 2-core CPU (its figures drawn by 2 processes there:
initlab-report --workers, default one per usable core).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPECTED = {"curves.png", "gradient_flow.png", "backprop_flow.png", "grad_heatmap.png", "accuracy_heatmap.png",
            "signature_heatmap.png", "diagnosis_heatmap.png", "dead_units.png", "theory_preact.png", "jacobian_depth.png"}
INITS = "xavier_uniform,kaiming_normal,orthogonal,lecun_normal,normal,zeros,he2015/small_normal,trunc_normal"


def make_sweep(folder: Path) -> None:
    if len(list(folder.glob("*/summary.json"))) == 1024:
        return
    cmd = [sys.executable, "-m", "initlab", "-m", "hydra/launcher=vectorized", "data=synthetic", "trainer.max_steps=20",
           "trainer.log_every=5", "trainer.progress=false", f"init={INITS}", "lr.value=1.0,0.1,0.01,0.001",
           "model.depth=2,6", "trainer.seed=range(16)", f"hydra.sweep.dir={folder}"]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    print(f"made the sweep: 1,024 runs in {time.perf_counter() - started:.1f} s ({folder})")


def report_seconds(folder: Path) -> float:
    report = Path(sys.executable).with_name("initlab-report")
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = subprocess.run([str(report), str(folder), "--out", out], capture_output=True, text=True,
                                env={**os.environ})
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(result.stderr[-3000:])
        figures = sorted(p.name for p in Path(out, "figures").glob("*.png"))
        # the eight of every report, and the theory figures this sweep's keys call for (depth: the Jacobian's)
        if set(figures) != EXPECTED or not Path(out, "report.md").exists():
            raise SystemExit(f"incomplete report: {figures}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="/tmp/initlab-bench-report")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(args.sweep)
    make_sweep(folder)
    times = [report_seconds(folder) for _ in range(args.repeat)]
    print(f"initlab-report, 1,024 runs: {' | '.join(f'{t:.1f} s' for t in times)} | fastest {min(times):.1f} s "
          f"(floor 10 s)")


if __name__ == "__main__":
    main()
