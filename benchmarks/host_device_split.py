"""Is a graphed single run bound by its host or by its GPU? The two measured apart, recording on and off.

    python benchmarks/host_device_split.py [--steps 100] [--sleep-ms 400] [--repeats 7]

The founding net, the default settings (CUDA graphs). After a first epoch has captured the graphs,
`steps` steps of `Training._epoch`'s loop are run three ways:
  normal   the loop as a user runs it, timed from its first step to the device's last (wall clock);
  host     the host's time to queue the same steps while the device is held in a busy-wait kernel
           (torch.cuda._sleep) queued just before the first step: the host never waits for the device,
           so this is what the loop's Python and CUDA calls cost alone. Valid only while well under
           the sleep (a full launch queue, or a call that waits, would block the host until the
           device wakes: then it says so; on the H200 300 steps filled the queue, 100 did not);
  device   the device's time for those steps once awake (CUDA events at the first step and after
           the last), back to back: what they cost the device alone, no waiting for the host.
Per step, for recording on and off, and what a record step adds to each (x 30 record steps of an
epoch / the plain epoch = the recording overhead if that side bounds the run). A run bound by the
device has normal close to device; one bound by the host, close to host.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config  # noqa: E402

from initlab.train import finite_checks  # noqa: E402
from initlab.config.check import validate  # noqa: E402
from initlab.train.loop import Training  # noqa: E402


def cycles_per_ms() -> float:
    """The busy-wait kernel's clock, measured: cycles a millisecond."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(10_000_000)  # warm-up
    start.record()
    torch.cuda._sleep(100_000_000)
    end.record()
    end.synchronize()
    return 100_000_000 / start.elapsed_time(end)


def split(run: Training, steps: int, epoch: int, sleep_cycles: int) -> tuple[float, float]:
    """(host seconds, device seconds) of `steps` steps of run's loop, the device asleep while the host queues them."""
    marks: dict = {}
    step, first_not_finite = run.graphs.step, finite_checks.LogStepChecks.first_not_finite

    def first_step(idx, record):  # the device sleeps from just before the first step's work
        run.graphs.step = step
        torch.cuda._sleep(sleep_cycles)
        marks["e0"] = torch.cuda.Event(enable_timing=True)
        marks["e0"].record()
        marks["t0"] = time.perf_counter()
        return step(idx, record)

    def end_of_loop(self, wait=False):  # _epoch's first call after its loop waits: the host has queued every step
        if wait and "t1" not in marks:
            marks["t1"] = time.perf_counter()
            marks["e1"] = torch.cuda.Event(enable_timing=True)
            marks["e1"].record()
        return first_not_finite(self, wait)

    run.graphs.step = first_step
    finite_checks.LogStepChecks.first_not_finite = end_of_loop
    try:
        run.total_steps = run.step + steps
        run._epoch(epoch)
        torch.cuda.synchronize()
    finally:
        run.graphs.step = step
        finite_checks.LogStepChecks.first_not_finite = first_not_finite
    return marks["t1"] - marks["t0"], marks["e0"].elapsed_time(marks["e1"]) / 1e3


def normal(run: Training, steps: int, epoch: int) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    run.total_steps = run.step + steps
    run._epoch(epoch)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, nargs="*", default=[100])
    parser.add_argument("--sleep-ms", type=float, default=400.0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rate = cycles_per_ms()
    sleep_cycles = int(args.sleep_ms * rate)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; busy-wait {args.sleep_ms:.0f} ms "
          f"({rate / 1e6:.2f} GHz); best of {args.repeats}, per step in us")
    runs = {record: Training(validate(config("trainer.device=cuda", f"trainer.record={str(record).lower()}")),
                             torch.device("cuda")) for record in (True, False)}
    for run in runs.values():
        run._epoch(1)  # captures every graph
    for steps in args.steps:
        best = {record: [float("inf")] * 3 for record in runs}
        epoch = 2
        for _ in range(args.repeats):  # in turn, so that drifts in the machine's speed hit both alike
            for record, run in runs.items():
                host, device = split(run, steps, epoch, sleep_cycles)
                wall = normal(run, steps, epoch + 1)
                best[record] = [min(a, b) for a, b in zip(best[record], (wall, host, device))]
            epoch += 2
        for record, (wall, host, device) in best.items():
            note = "" if host < 0.8 * args.sleep_ms / 1e3 else "  (host time near the sleep: it waited, not valid)"
            print(f"  {steps} steps, recording {'on ' if record else 'off'}: normal {1e6 * wall / steps:6.1f} | "
                  f"host {1e6 * host / steps:6.1f} | device {1e6 * device / steps:6.1f}{note}")
        (w1, h1, d1), (w0, h0, d0) = best[True], best[False]
        per_record = steps / 10  # record steps among them (trainer.log_every=10)
        print(f"  a record step adds: normal {1e6 * (w1 - w0) / per_record:6.1f} us, host {1e6 * (h1 - h0) / per_record:6.1f}, "
              f"device {1e6 * (d1 - d0) / per_record:6.1f}; overhead normal {100 * (w1 / w0 - 1):.1f} %, "
              f"host alone {100 * (h1 / h0 - 1):.1f} %, device alone {100 * (d1 / d0 - 1):.1f} %")


if __name__ == "__main__":
    main()
