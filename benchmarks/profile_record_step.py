"""What recording costs a single run on a GPU, kernel by kernel: the kernels of a plain step and of a
record step (the probes before the update, the update ratio after it), counted and timed.

    python benchmarks/profile_record_step.py [--device cuda] [--steps 40] [--together yes|no]

The founding net on MNIST, batch 200, eager (CUDA graphs replay these same kernels, one launch
for all). For each kind of step: how many kernels, their summed GPU time per step, and the
kernels a record step adds, by GPU time. With CUDA graphs a step costs about its kernels' GPU
time plus a few microseconds each, and a graphed run is bound by the GPU
(benchmarks/profile_graphed_epoch.py), so the kernel time a record step adds, times the 30 record
steps of an epoch, over an epoch's time, is about the recording overhead of bench_single_run.py
(12.9 % on the H200, floor 10 %; a record step added 33 kernels, 136 us; 24 and 86 us with the
hidden layers' activations together, 2026-11-30). Eager steps run every kernel on one stream, so
the side streams of a captured record step (initlab/train/gpu/side_streams.py), which let those kernels
overlap, do not show here: benchmarks/host_device_split.py measures the graphed step. On the CPU it prints the operator counts, and
how many of them do work (a kernel each on a GPU) rather than make a view.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config  # noqa: E402

from initlab.config.check import validate  # noqa: E402
from initlab.train.probes import Activations  # noqa: E402
from initlab.train.loop import Training  # noqa: E402

# Operators that only make a view (or, for aten::to to the same dtype, return their input): no kernel on a GPU.
VIEWS = {"aten::detach", "aten::unsqueeze", "aten::flatten", "aten::view", "aten::slice", "aten::transpose",
         "aten::select", "aten::t", "aten::as_strided", "aten::expand", "aten::reshape", "aten::alias",
         "aten::squeeze", "aten::permute", "aten::_reshape_alias", "aten::lift_fresh"}


def launches(event) -> bool:
    """Whether a top-level CPU operator does work (a GPU would launch a kernel for it)."""
    if event.name == "aten::to":
        return bool(event.cpu_children)  # a real conversion copies (aten::_to_copy)
    return event.name not in VIEWS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--together", choices=("yes", "no"), default=None,
                        help="Activations' hidden layers together (the GPU's default) or each alone (the CPU's)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.together is not None:  # e.g. the GPU's path counted on the CPU
        Activations.__init__.__defaults__ = (args.together == "yes",)
    run = Training(validate(config(f"trainer.device={args.device}", "trainer.cuda_graphs=false")), device)
    idx = torch.randperm(len(run.data.train_y), device=device)[:200]
    gpu = device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if gpu else [])

    def step(record: bool) -> None:
        run._device_step(idx, record)
        run.optimizer.step()
        if record:
            run.recorder.append(run._after_values(), 0, 1)

    for _ in range(5):  # warm-up: allocator, cuBLAS handles
        step(True), step(False)
    per_kind = {}
    for record in (False, True):
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(args.steps):
                step(record)
            if gpu:
                torch.cuda.synchronize()
        if gpu:
            kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
            times = Counter()
            counts = Counter()
            for e in kernels:
                times[e.name] += e.time_range.elapsed_us()  # a kernel's own span on the device
                counts[e.name] += 1
        else:
            kernels = [e for e in prof.events() if e.name.startswith("aten::") and
                       (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
            times = Counter({e.name: 0 for e in kernels})
            counts = Counter(e.name for e in kernels)
        per_kind[record] = (counts, times)
        total_us = sum(times.values()) / args.steps
        working = "" if gpu else f" ({sum(launches(e) for e in kernels) / args.steps:.0f} doing work, not views)"
        print(f"{'record step' if record else 'plain step '}: {sum(counts.values()) / args.steps:.0f} "
              + (f"kernels, {total_us:.1f} us of GPU time per step" if gpu else "operators per step" + working),
              flush=True)
    (plain_n, plain_t), (rec_n, rec_t) = per_kind[False], per_kind[True]
    added = Counter({k: rec_t[k] - plain_t.get(k, 0) for k in rec_t})
    print("what a record step adds, per step: " + ("count x GPU us, kernel" if gpu else "count, operator"))
    for name, _ in sorted(added.items(), key=lambda kv: -kv[1] if gpu else -(rec_n[kv[0]] - plain_n.get(kv[0], 0)))[:25]:
        extra = (rec_n[name] - plain_n.get(name, 0)) / args.steps
        if extra > 0:
            print(f"  {extra:5.1f} x {added[name] / args.steps:8.1f} us  {name[:100]}" if gpu else f"  {extra:5.1f}  {name}")


if __name__ == "__main__":
    main()
