"""A stacked group's evaluation alone: stacked.evaluate_members of `--members` founding nets
(784-200-200-10, each seeded as the launcher seeds it) on MNIST's 10,000 test images, best of 3.
No training, no records. It also checks what the evaluation promises: each member's numbers are
bit for bit the same in a group of 1, of 3 and of all of them.

    python benchmarks/bench_evaluate.py [--device cpu] [--members 256]

Before 13fae77 the test set went through in chunks sized by the member count (2**22 numbers of
activations on the CPU: 81 rows for 256 members), so a member's test loss, a float32 sum over the
chunks, could differ in its last bit between groups of different sizes. It now goes through in
fixed chunks of stacked.EVAL_ROWS rows, the members a slice at a time within the same budget.
On the 2-core VM (benchmarks/results/cpu-evaluate.txt): 7.02 s for 256 members, and 9.47 s with
6abd6db's evaluate_members on the same models, whose groups of 1 and 3 were not bit for bit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config  # noqa: E402

from initlab.config.check import validate  # noqa: E402
from initlab.build.data import load as load_data  # noqa: E402
from initlab.stacked.models import EVAL_ROWS, StackedMLP, evaluate_members  # noqa: E402
from initlab.train.loop import build_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--members", type=int, default=256)
    args = parser.parse_args()
    device = torch.device(args.device)
    settings = [validate(config("trainer.epochs=1", f"trainer.seed={k}", f"trainer.device={args.device}"))
                for k in range(args.members)]
    data = load_data(settings[0]["data"], device)
    models = [build_model(s, data, device) for s in settings]
    net = StackedMLP(models)
    x, y = data.test_x, data.test_y
    times = []
    for _ in range(3):
        start = time.perf_counter()
        everyone = evaluate_members(net, x, y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    same = sum(evaluate_members(StackedMLP([models[k] for k in part]), x, y) == [everyone[k] for k in part]
               for part in ([0], [1, 2, 3]))
    print(f"{args.members} founding nets on {len(y)} test images, chunks of {EVAL_ROWS} rows, on {device} "
          f"(torch {torch.__version__}): {min(times):.2f} s, best of {', '.join(f'{t:.2f}' for t in times)}; "
          f"groups of 1 and 3 bit for bit the same as in the group of {args.members}: {same == 2}")


if __name__ == "__main__":
    main()
