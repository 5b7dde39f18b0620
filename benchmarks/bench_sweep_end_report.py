"""The report a sweep writes when it ends (hydra/callbacks=report), for a 1,024-run sweep: drawn in
the sweep's own process, one figure after another, against `initlab-report` in a process of its own
with its figures drawn in parallel (SweepEnd.report_process_from, 256 runs by default).

    python benchmarks/bench_sweep_end_report.py [--sweep DIR] [--repeat 2]

Uses (and makes once, as bench_report.py does) the 1,024-run sweep of bench_report.py. Times
SweepEnd.on_multirun_end in a process that has imported torch and initlab's launcher, as a sweep's
has: from the call to its return (counting the runs, the report, its files on disk). Alternates the
two ways, and checks that their figures are the same to the byte.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_report import make_sweep  # noqa: E402

from omegaconf import OmegaConf  # noqa: E402

from initlab.sweep.callbacks import SweepEnd  # noqa: E402
from initlab.cores import usable_cores  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sweep", type=Path, default=Path("/tmp/initlab-bench-report"))
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    for module in ("torch", "initlab.sweep.vectorized"):  # what a sweep's process has imported
        importlib.import_module(module)
    make_sweep(args.sweep)
    ended = OmegaConf.create({"hydra": {"sweep": {"dir": str(args.sweep)}}})
    ways = {"in the sweep's process, one figure after another": 10**9,
            f"initlab-report in a process of its own ({usable_cores()} usable cores)": 256}
    times: dict[str, list[float]] = {way: [] for way in ways}
    figures: dict[str, dict[str, bytes]] = {}
    for _ in range(args.repeat):
        for way, threshold in ways.items():
            shutil.rmtree(args.sweep / "report", ignore_errors=True)
            started = time.perf_counter()
            SweepEnd(report=True, report_process_from=threshold).on_multirun_end(ended)
            times[way].append(time.perf_counter() - started)
            figures[way] = {p.name: p.read_bytes() for p in (args.sweep / "report" / "figures").glob("*.png")}
    for way, seconds in times.items():
        print(f"{way}: " + ", ".join(f"{s:.1f} s" for s in seconds))
    first, second = figures.values()
    print(f"figures: {len(first)}, the same to the byte both ways: {first == second}")


if __name__ == "__main__":
    main()
