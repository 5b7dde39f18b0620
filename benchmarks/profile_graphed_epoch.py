"""Where a graphed single run's epoch goes on a GPU, recording on and off: the host's CUDA calls
(the waits among them) and how long the device was busy.

    python benchmarks/profile_graphed_epoch.py [--device cuda]

The founding net, batch 200, the default settings (CUDA graphs on). For each of recording on and
off: one epoch to capture the graphs, then an epoch (300 steps, no evaluation: `Training._epoch`)
timed bare and then under torch.profiler. Prints the bare epoch's seconds, the GPU time of the
profiled epoch's kernels summed (CUPTI sees the kernels inside graph replays), and the CUDA
runtime calls by host time: a call that waits (cudaStreamSynchronize, cudaEventSynchronize,
cudaMemcpy to pageable memory, cudaHostAlloc, ...) in a loop that should never wait is what
this looks for. When the summed kernel time is well under the bare epoch, the run is bound by
the host; when near it, by the device. The profiler slows the host, so its own epoch is longer.
On a GPU it also splits the epoch into its steps on the device: a log step (a record step, with
recording on) against the others, busy and idle (steps_timeline).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config, timed  # noqa: E402

from initlab.config.check import validate  # noqa: E402
from initlab.train.loop import Training  # noqa: E402


def steps_timeline(events, record: bool, log_every: int = 10) -> None:
    """Per step on the device, the log steps (every `log_every`-th: the record steps) apart from the
    rest: from the step's first kernel to the next step's, how long the device was busy (kernels and
    copies) and idle, and how many kernels ran. A step starts with the epoch's first kernel (the
    batch's gather: k of them a step, the first of each k)."""
    events = sorted(events, key=lambda e: e.time_range.start)
    first = next(e.name for e in events if not e.name.startswith("Memcpy"))  # the first kernel of step 0
    marks = [i for i, e in enumerate(events) if e.name == first]
    if not marks or len(marks) % 300:
        print(f"  step timeline: the first kernel ({first[:60]}) ran {len(marks)} times, not k x 300: not split")
        return
    starts = marks[:: len(marks) // 300]
    kinds = {True: [], False: []}
    for n, (a, b) in enumerate(zip(starts, starts[1:])):
        span = events[b].time_range.start - events[a].time_range.start
        busy = sum(e.time_range.elapsed_us() for e in events[a:b])
        kinds[n % log_every == 0].append((span, busy, b - a))
    for log_step, rows in kinds.items():
        span, busy, count = (sum(r[i] for r in rows) / len(rows) for i in range(3))
        print(f"  {'log steps' if log_step else 'other steps'} ({len(rows)}, recording {'on' if record else 'off'}): "
              f"{span:6.1f} us a step on the device, busy {busy:6.1f}, idle {span - busy:5.1f}; {count:.1f} kernels and copies")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    device = torch.device(args.device)
    for record in (True, False):
        run = Training(validate(config(f"trainer.device={args.device}", f"trainer.record={str(record).lower()}")), device)
        run._epoch(1)  # captures every graph
        bare = min(timed(run._epoch, e)[0] for e in (2, 3, 4))
        gpu = device.type == "cuda"
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if gpu else [])
        with torch.profiler.profile(activities=activities) as prof:
            run._epoch(5)
            if gpu:
                torch.cuda.synchronize()
        events = prof.events()
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e6
        calls, spent = Counter(), Counter()
        for e in events:
            if e.device_type == torch.autograd.DeviceType.CPU and e.name.startswith(("cuda", "cu")) \
                    and not e.name.startswith("cudaGetDevice"):
                calls[e.name] += 1
                spent[e.name] += e.time_range.elapsed_us()
        print(f"recording {'on' if record else 'off'}: bare epoch {bare:.4f} s; profiled epoch's kernels "
              f"{busy:.4f} s of GPU time ({len(kernels)} kernels, {len(kernels) / 300:.1f} a step)", flush=True)
        if gpu:
            steps_timeline(kernels, record)
        print("  CUDA runtime calls by host time: count, total ms, name")
        for name, us in spent.most_common(args.top):
            print(f"    {calls[name]:6d} {us / 1e3:9.2f}  {name}")
        del run


if __name__ == "__main__":
    main()
