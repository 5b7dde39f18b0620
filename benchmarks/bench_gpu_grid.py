"""Issue 11's headline: the founding net, an init x lr x seed grid of 1,024 configurations x 10 epochs
with recording on, end to end through the CLI (process start to the last record on disk), and the
effect of trainer.tf32=true on the recorded numbers against FP32.

    python benchmarks/bench_gpu_grid.py [--seeds 32] [--epochs 10] [--device cuda] [--out DIR] [--variants fp32,tf32]
        [override ...]

The grid is 8 inits x 4 learning rates x `--seeds` seeds through hydra/launcher=vectorized (1,024 at
the default 32 seeds). It runs each of --variants (FP32 then TF32 by default; fp32-eager turns CUDA
graphs off; fp32-writes-here has the launcher write every job folder itself, without write
processes) in its own sweep folder, and prints each wall time and milestones, then per
configuration the largest difference against FP32 in final test accuracy and loss, and the
relative difference over every per-layer statistic. On the CPU (small
--seeds and --epochs) it checks that the script works: TF32 changes nothing there.

The host's share on any machine: a model so small that training costs little, with records of the
grid's size (300 log steps, 3,000 loss points a run), e.g. on the 2-core VM
    python benchmarks/bench_gpu_grid.py --device cpu --variants fp32,fp32-writes-here data=synthetic \
        data.source.num_train=6000 data.source.num_test=200 data.source.in_features=16 model.width=8 \
        trainer.batch_size=20 hydra.launcher.max_group_size=1024
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path

INITS = "kaiming_normal,xavier_uniform,orthogonal,lecun_normal,torch_default,kaiming_uniform,xavier_normal,trunc_normal"
LRS = "0.1,0.05,0.02,0.01"


VARIANTS = {  # name: (trainer.tf32, trainer.cuda_graphs, more overrides)
    "fp32": (False, True, []),  # the defaults
    "tf32": (True, True, []),
    "fp32-eager": (False, False, []),  # without CUDA graphs: one launch per kernel
    "fp32-writes-here": (False, True, ["hydra.launcher.write_workers=0"]),  # job folders written by the launcher alone
}


def sweep(folder: Path, seeds: int, epochs: int, device: str, tf32: bool, graphs: bool, extra: list[str]) -> float:
    """Run the grid through the CLI; its wall time. The sweep's log goes to `folder`.log, and the
    times of its milestones (plan, first group, each group's last epoch, the end) are printed."""
    command = [sys.executable, "-m", "initlab", "-m", "hydra/launcher=vectorized", f"init={INITS}", f"lr.value={LRS}",
               f"trainer.seed=range(0,{seeds})", f"trainer.epochs={epochs}", f"trainer.device={device}",
               f"trainer.tf32={str(tf32).lower()}", f"trainer.cuda_graphs={str(graphs).lower()}",
               "trainer.progress=false", f"hydra.sweep.dir={folder}", *extra]
    log = folder.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    started_at, started = datetime.now(), time.perf_counter()
    with open(log, "w") as out:
        subprocess.run(command, check=True, stdout=out, stderr=subprocess.STDOUT,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = time.perf_counter() - started
    milestones, last = [], None
    for line in log.read_text().splitlines():
        stamp = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[[^]]*\] (.*)", line)
        if not stamp:
            continue
        at = (datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f") - started_at).total_seconds()
        last = f"    {at:6.1f} s  (last log line) {stamp.group(2)[:90]}"
        if re.match(r"Vectorized:|group \d|group epoch (1|%d)/|\d+ job folders written" % epochs, stamp.group(2)):
            milestones.append(f"    {at:6.1f} s  {stamp.group(2)[:110]}")
    print("\n".join(milestones[:12] + [last or ""]))
    return seconds


def compare(fp32: Path, tf32: Path, other: str = "TF32") -> str:
    """Per configuration, FP32 (`fp32`) against the sweep in `tf32` (`other` names it in the text)."""
    import numpy as np

    from initlab.report.tables import load

    a, b = load([fp32]), load([tf32])
    keys = ["init", "lr.value", "trainer.seed"]
    runs = a.runs[keys + ["test_accuracy", "test_loss"]].merge(
        b.runs[keys + ["test_accuracy", "test_loss"]], on=keys, suffixes=("", "_tf32"))
    acc = (runs.test_accuracy - runs.test_accuracy_tf32).abs()
    loss = (runs.test_loss - runs.test_loss_tf32).abs()
    on = keys + ["step", "layer", "metric"]  # run folder names differ (they hold trainer.tf32)
    plain = [s.layers[["run", "step", "layer", "metric", "value"]].astype({"run": str, "metric": str}).merge(
        s.runs[["run"] + keys].astype({"init": str}), on="run")[on + ["value"]] for s in (a, b)]
    merged = plain[0].merge(plain[1], on=on, suffixes=("", "_tf32"))
    finite = np.isfinite(merged.value) & np.isfinite(merged.value_tf32) & (merged.value != 0)
    rel = ((merged.value - merged.value_tf32).abs() / merged.value.abs())[finite]
    return (f"configurations: {len(runs)}\n"
            f"final test accuracy, |FP32 - {other}|: max {100 * acc.max():.3f} points, median {100 * acc.median():.3f}\n"
            f"final test loss, |FP32 - {other}|: max {loss.max():.3g}, median {loss.median():.3g}\n"
            f"per-layer statistics ({finite.sum():,} values), relative difference: median {rel.median():.3g}, "
            f"95th percentile {rel.quantile(0.95):.3g}, max {rel.max():.3g}; "
            f"{100 * ((merged.value == merged.value_tf32) | (merged.value.isna() & merged.value_tf32.isna())).mean():.1f} % "
            f"of all {len(merged):,} values identical (NaN = NaN)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=None)
    parser.add_argument("--variants", default="fp32,tf32", help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("overrides", nargs="*", help="more overrides for every sweep (e.g. a small model, to time the host's work)")
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="initlab-grid-"))
    n = 8 * 4 * args.seeds
    variants = args.variants.split(",")
    for name in variants:
        tf32, graphs, extra = VARIANTS[name]
        seconds = sweep(root / name, args.seeds, args.epochs, args.device, tf32, graphs, extra + args.overrides)
        print(f"{name}: {n} configurations x {args.epochs} epochs, end to end {seconds:.1f} s", flush=True)
    if "fp32" in variants and "tf32" in variants:
        print(compare(root / "fp32", root / "tf32"))
    if "fp32" in variants and "fp32-eager" in variants:
        print("CUDA graphs against eager:", compare(root / "fp32", root / "fp32-eager", other="eager"))
    if "fp32" in variants and "fp32-writes-here" in variants:
        print("write processes against the launcher alone:", compare(root / "fp32", root / "fp32-writes-here", other="here"))


if __name__ == "__main__":
    main()
