"""Where a stacked group's build goes, member by member: what GroupTraining does before its first
step, each part timed on its own (the device synchronized around each, so nothing overlaps).

    python benchmarks/profile_build.py [--device cuda] [--members 256]

The grid's members (bench_gpu_grid.py: 8 inits x 4 learning rates x seeds, the founding net).
Per member: seeding, building the nn.Linear layers (with their default init) and moving them to
the device, the init scheme, the symmetric-layer check, the mean-field theory, J J^T at init
(its eigenvalues run on a thread in the launcher, and are left out here), then once for the
group: stacking the members' weights. One member of each init is built first and not counted
(one-time costs: lazy imports, caches). On the H200 the grid's build and first epoch took 13.9 s,
of which the epoch is ~4.7 s: this says where the rest goes.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_gpu_grid import INITS, LRS  # noqa: E402
from common import config  # noqa: E402

from initlab.build import data as datasets  # noqa: E402
from initlab.train import jacobian  # noqa: E402
from initlab.train import predictions
from initlab.config.check import validate  # noqa: E402
from initlab.build.init import apply_init  # noqa: E402
from initlab.stacked.models import StackedMLP  # noqa: E402
from initlab.train.loop import construct, symmetric_of  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--members", type=int, default=256)
    args = parser.parse_args()
    device = torch.device(args.device)
    inits, lrs = INITS.split(","), LRS.split(",")
    per_init = [validate(config(f"init={i}", f"trainer.device={args.device}")) for i in inits]  # composed once each
    members = []
    for k in range(args.members):
        s = copy.deepcopy(per_init[k % len(inits)])
        s["lr"]["value"], s["trainer"]["seed"] = float(lrs[k // len(inits) % len(lrs)]), k
        members.append(s)
    data = datasets.load(members[0]["data"], device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    spent: dict[str, float] = defaultdict(float)

    def part(name: str, fn):
        sync()
        started = time.perf_counter()
        out = fn()
        sync()
        spent[name] += time.perf_counter() - started
        return out

    models = []
    for k, s in enumerate(members[: len(inits)] + members):  # training.build_model, part by part
        if k == len(inits):  # the first of each init was a warm-up (lazy imports, caches): not counted
            spent.clear(), models.clear()
        m, seed = s["model"], s["trainer"]["seed"]
        part("seed", lambda: torch.manual_seed(seed) if device.type != "cpu"
             else torch.random.default_generator.manual_seed(seed))
        model = part("construct + default init + to(device)",
                     lambda: construct(m, in_features=data.in_features, num_classes=data.num_classes).to(device))
        part("init scheme", lambda: apply_init(model, s["init"], s["bias"], m["activation"], m["negative_slope"]))
        part("symmetric check", lambda: symmetric_of(model))
        part("theory", lambda: predictions.for_model(model, m, data.input_second_moment))
        part("J J^T at init (and to the CPU)",
             lambda: (lambda k: None if k is None else k.cpu())(jacobian.gram_for_run(model, data.train_x, s["trainer"]["jacobian_inputs"])))
        models.append(model)
    part("stack the members' weights (once)", lambda: StackedMLP(models))
    total = sum(spent.values())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}, torch {torch.__version__}: building {args.members} members took {total:.2f} s "
          f"({1e3 * total / args.members:.2f} ms a member)")
    for what, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {1e3 * seconds / args.members:7.3f} ms a member  {what}")
    timed_inits = defaultdict(list)
    for s in members[: len(inits) * 4]:  # each scheme's init alone, 4 times
        m = s["model"]
        model = construct(m, in_features=data.in_features, num_classes=data.num_classes).to(device)
        sync()
        started = time.perf_counter()
        apply_init(model, s["init"], s["bias"], m["activation"], m["negative_slope"])
        sync()
        timed_inits[s["init"]["_target_"].rsplit(".", 1)[-1]].append(time.perf_counter() - started)
    print("  the init scheme alone: " + ", ".join(f"{k} {1e3 * min(v):.2f} ms" for k, v in timed_inits.items()))


if __name__ == "__main__":
    main()
