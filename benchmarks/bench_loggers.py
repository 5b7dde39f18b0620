"""What logging costs a run, end to end through the command a user types.

    python benchmarks/bench_loggers.py [--repeat 3] [--epochs 10]

Times `initlab trainer.progress=false` (the default job: the founding net with Kaiming init on
MNIST, 10 epochs, statistics every 10 steps) from the start of the process to its exit, with
logger=none, logger=tensorboard and logger=mlflow (a fresh SQLite store per run), the three
interleaved, --repeat times each; prints each time, the median per logger and the overhead
against logger=none. Issue floor: logging on costs under 10 % of a run; off costs nothing
(logger=none imports neither library and calls nothing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOGGERS = {"none": [], "tensorboard": ["logger=tensorboard"], "mlflow": ["logger=mlflow"]}


def seconds(extra: list[str], epochs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        env.setdefault("INITLAB_DATA", str(ROOT.parent / "shared" / "data"))
        cmd = [sys.executable, "-m", "initlab", "trainer.progress=false", f"trainer.epochs={epochs}",
               f"hydra.run.dir={tmp}/run", *extra]
        started = time.perf_counter()
        result = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        took = time.perf_counter() - started
        if result.returncode != 0 or not Path(tmp, "run", "summary.json").exists():
            raise SystemExit(result.stderr[-3000:])
        if extra == ["logger=tensorboard"] and not list(Path(tmp, "run").glob("events.out.tfevents.*")):
            raise SystemExit("no TensorBoard events written")
        if extra == ["logger=mlflow"] and not Path(tmp, "mlflow.db").exists():
            raise SystemExit("no MLflow store written")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in LOGGERS}
    for _ in range(args.repeat):
        for name, extra in LOGGERS.items():
            times[name].append(seconds(extra, args.epochs))
    base = statistics.median(times["none"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"logger={name:<12} {' | '.join(f'{t:.2f} s' for t in values)} | median {median:.2f} s | "
              f"{100 * (median - base) / base:+.1f} % against none (floor +10 %)")
    per_run_in_a_sweep(base)


def per_run_in_a_sweep(run_seconds: float) -> None:
    """Inside one process (a sweep), the libraries' import and the store's creation happen once:
    the cost per run is logging its records. Timed on the default job's own records."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ}
        env.setdefault("INITLAB_DATA", str(ROOT.parent / "shared" / "data"))
        subprocess.run([sys.executable, "-m", "initlab", "trainer.progress=false", f"hydra.run.dir={tmp}/run"],
                       cwd=tmp, env=env, check=True, capture_output=True)
        from initlab.loggers.run_info import RunInfo
        from initlab.store import records
        from initlab.loggers.mlflow import MLflow
        from initlab.loggers.tensorboard import TensorBoard

        record = records.load_run(Path(tmp, "run"))
        rows = len(record.layers) + len(record.curves)
        for name, make in (("tensorboard", lambda: TensorBoard(f"{tmp}/tb")),
                           ("mlflow", lambda: MLflow(f"sqlite:///{tmp}/m.db")),
                           ("mlflow max_points=100", lambda: MLflow(f"sqlite:///{tmp}/m100.db", max_points=100))):
            logger = make()
            started = time.perf_counter()
            logger.log(RunInfo(Path(tmp, "run0"), record.summary, record.layers, record.curves))
            first = time.perf_counter() - started  # the import and a new store included
            took = []
            for i in range(1, 4):
                started = time.perf_counter()
                logger.log(RunInfo(Path(tmp, f"run{i}"), record.summary, record.layers, record.curves))
                took.append(time.perf_counter() - started)
            each = statistics.median(took)
            print(f"in a sweep, {name:<22} first run {first:.2f} s, then {each:.2f} s per run "
                  f"({rows} values; {100 * each / run_seconds:.1f} % of the default run)")


if __name__ == "__main__":
    main()
