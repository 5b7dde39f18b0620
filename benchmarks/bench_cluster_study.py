"""Issue 11's "done when": a 10,000-configuration study as stacked groups through submitit, end to end
through the CLI, then the same study killed part-way and resumed by running the same command again.

    python benchmarks/bench_cluster_study.py [--seeds 250] [--out DIR] [--kill-after 0.4] [override ...]

The study is 8 inits x 5 learning rates x `--seeds` seeds (10,000 at the default 250) of an MLP on
real MNIST through `hydra/launcher=vectorized_submitit_local`, the same code path as
`vectorized_slurm` with submitit's local executor standing in for the cluster (one process per
stacked group of `max_group_size` 256, one group at a time). Every run trains 2 steps and is
evaluated on the 10,000 test images, with a 16-unit-wide net so that on a 2-core VM the time is
the machinery's: planning, submitting, each group's job (start, configs, build, write), not the
arithmetic. What it prints:

1. the whole study from process start to exit (the last record on disk), with the planning
   share (process start to "Vectorized on submitit"), the submitting process's peak memory (its own
   resident set, sampled), and the sweep's end counts;
2. the same study in a second folder, its whole process group killed with SIGKILL once
   `--kill-after` of the runs have their summary (no clean-up can run: a lost login node), then
   the same command again: what the resumed sweep says it skips and trains, its time, its end
   counts; and every run's records (status, config hash, every per-layer and curve value) against
   the uninterrupted study's. The resumed sweep trains what is left in groups of other sizes; on
   the CPU its records are still bit for bit the uninterrupted study's (until 2026-11-29 a group
   evaluated the test set in chunks sized by its member count, so a regrouped run's test loss could
   differ in its last bit: the earlier results in benchmarks/results/ show that).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from bench_gpu_grid import INITS  # noqa: E402

LRS = "0.2,0.1,0.05,0.02,0.01"


# --launcher slurm: the one-node cluster of .ci/slurm-cluster (2 CPUs, no GPU): one group at a time, as local
LAUNCHERS = {"local": ["hydra/launcher=vectorized_submitit_local"],
             "slurm": ["hydra/launcher=vectorized_slurm", "hydra.launcher.gpus_per_node=null",
                       "hydra.launcher.cpus_per_task=2", "hydra.launcher.mem_gb=8"]}


def command(folder: Path, seeds: int, extra: list[str], launcher: str = "local") -> list[str]:
    return [sys.executable, "-m", "initlab", "-m", *LAUNCHERS[launcher],
            "hydra.launcher.max_group_size=256", f"init={INITS}", f"lr.value={LRS}", f"trainer.seed=range(0,{seeds})",
            "model.width=16", "trainer.max_steps=2", "trainer.progress=false", f"hydra.sweep.dir={folder}", *extra]


def rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, IndexError):
        return 0.0


def finished(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*/summary.json"))


def run(cmd: list[str], log: Path, kill_at: int | None = None, folder: Path | None = None) -> dict:
    """Run the CLI in its own process group; its wall time, peak RSS and output. With `kill_at`, the
    group is killed with SIGKILL once `folder` holds that many summaries."""
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        peak, killed, samples = 0.0, False, []
        while proc.poll() is None:
            rss = rss_mb(proc.pid)
            peak = max(peak, rss)
            if rss:
                samples.append((time.time(), rss))
            if kill_at is not None and finished(folder) >= kill_at:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                proc.wait()
                break
            time.sleep(0.2)
    return {"seconds": time.perf_counter() - started, "rc": proc.returncode, "peak_mb": peak, "killed": killed,
            "text": log.read_text(), "samples": samples}


def memory_words(result: dict) -> str:
    """The submitting process's resident memory when the first groups were submitted and at its end: what
    planning holds (freed memory mostly stays resident) against what collecting the groups' JobReturns adds."""
    samples = result["samples"]
    m = re.search(r"^\[([\d\-: ,]+)\]\[HYDRA\] submitted", result["text"], re.M)
    if not samples or not m:
        return ""
    from datetime import datetime

    at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    submitted = max((rss for t, rss in samples if t <= at + 1.0), default=0.0)
    return f" ({submitted:.0f} MB when the groups were submitted, {samples[-1][1]:.0f} MB at the end)"


def end_line(text: str) -> str:
    lines = [line for line in text.splitlines() if "] sweep: " in line]
    return lines[-1].split("] ", 1)[1] if lines else "(no end line)"


def plan_seconds(text: str, started: float) -> str:
    """Seconds from process start to the plan line (the log's clock against the wall clock)."""
    from datetime import datetime

    m = re.search(r"^\[([\d\-: ,]+)\]\[HYDRA\] Vectorized on submitit", text, re.M)
    if not m:
        return "?"
    at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return f"{at - started:.1f}"


def records(folder: Path) -> dict:
    out = {}
    for summary in folder.glob("*/summary.json"):
        s = json.loads(summary.read_text())
        out[summary.parent.name] = (s["status"], s["config_hash"], summary.parent)
    return out


def tables(folder: Path) -> tuple[list[pd.DataFrame], np.ndarray]:
    """A run's per-layer statistics and curves: their rows without the values, and every value, in file order."""
    frames = [pd.read_parquet(folder / f) for f in ("layers.parquet", "curves.parquet")]
    return [t.drop(columns="value") for t in frames], np.concatenate([t["value"].to_numpy(float) for t in frames])


def compare(a: Path, b: Path, rtol: float = 1e-6) -> dict:
    """Run by run: same status and config hash, same rows, values equal bit for bit or within `rtol`."""
    ra, rb = records(a), records(b)
    result = {"compared": 0, "exact": 0, "max_rel": 0.0, "differ": sorted(set(ra) ^ set(rb))}
    for name in sorted(set(ra) & set(rb)):
        (sa, ha, fa), (sb, hb, fb) = ra[name], rb[name]
        (rows_a, va), (rows_b, vb) = tables(fa), tables(fb)
        result["compared"] += 1
        if (sa, ha) != (sb, hb) or not all(x.equals(y) for x, y in zip(rows_a, rows_b)):
            result["differ"].append(name)
            continue
        if np.array_equal(va, vb, equal_nan=True):
            result["exact"] += 1
            continue
        both = np.isfinite(va) & np.isfinite(vb)
        rel = np.abs(va - vb)[both] / np.maximum(np.abs(va[both]), 1e-30)
        result["max_rel"] = max(result["max_rel"], float(rel.max(initial=0.0)))
        if not (np.array_equal(np.isfinite(va), np.isfinite(vb)) and np.allclose(va, vb, rtol=rtol, atol=0, equal_nan=True)):
            result["differ"].append(name)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=250)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--kill-after", type=float, default=0.4, help="share of the runs finished when the kill comes")
    parser.add_argument("--whole-only", action="store_true", help="the uninterrupted study only (no kill and resume)")
    parser.add_argument("--launcher", choices=sorted(LAUNCHERS), default="local",
                        help="slurm: through a running SLURM cluster (bash .ci/slurm-cluster starts one)")
    args, extra = parser.parse_known_args()
    os.environ.setdefault("INITLAB_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    out = args.out or Path(tempfile.mkdtemp(prefix="initlab-study-"))
    out.mkdir(parents=True, exist_ok=True)
    n = 8 * 5 * args.seeds
    print(f"{n} configurations; folders under {out}")
    print("command:", " ".join(command(out / "whole", args.seeds, extra, args.launcher)[2:]))

    wall_start = time.time()
    whole = run(command(out / "whole", args.seeds, extra, args.launcher), out / "whole.log")
    print(f"\n1. whole study: {whole['seconds']:.1f} s end to end (rc {whole['rc']}), "
          f"{whole['seconds'] / n * 1000:.1f} ms per configuration; planned {plan_seconds(whole['text'], wall_start)} s "
          f"after start; submitting process peak RSS {whole['peak_mb']:.0f} MB{memory_words(whole)}")
    print("   " + end_line(whole["text"]))

    if args.whole_only:
        return
    kill_at = int(args.kill_after * n)
    killed = run(command(out / "resumed", args.seeds, extra, args.launcher), out / "killed.log", kill_at, out / "resumed")
    left = finished(out / "resumed")
    if not killed["killed"]:
        print(f"\n2. the study in a new folder ended (rc {killed['rc']}) before {kill_at} runs finished: no kill to resume from")
        return
    print(f"\n2. same study in a new folder, killed (SIGKILL, whole process group) after {killed['seconds']:.1f} s "
          f"with {left} of {n} runs finished")
    resumed = run(command(out / "resumed", args.seeds, extra, args.launcher), out / "resumed.log")
    said = re.search(r"Vectorized on submitit \(\w+\): (.*)", resumed["text"])
    print(f"   the same command again: {resumed['seconds']:.1f} s (rc {resumed['rc']}); "
          f"it says: {said.group(1) if said else '?'}")
    print("   " + end_line(resumed["text"]))
    c = compare(out / "whole", out / "resumed")
    print(f"   records against the uninterrupted study's, {c['compared']} runs: {c['exact']} equal bit for bit"
          + (f", the rest within float rounding (largest relative difference {c['max_rel']:.1e})"
             if c['exact'] < c['compared'] else "")
          + f"; {len(c['differ'])} differ beyond 1e-6{': ' + ', '.join(c['differ'][:5]) if c['differ'] else ''}")

if __name__ == "__main__":
    main()
