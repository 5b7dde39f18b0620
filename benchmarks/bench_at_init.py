"""What the measurements at init cost a run: the mean-field predictions (predictions.for_model), the
Jacobian's singular values (jacobian.for_run, 2 inputs: the default) and LSUV's data pass, each timed alone
(best of 5) on the models it is built for: the founding net, and the edge-of-chaos study's
deepest tanh net (100 x 300).

    python benchmarks/bench_at_init.py        (CPU; results in benchmarks/results/cpu-at-init.txt)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config  # noqa: E402

from initlab.build import data as datasets  # noqa: E402
from initlab.train import jacobian  # noqa: E402
from initlab.train import predictions
from initlab.config.check import validate  # noqa: E402
from initlab.train.loop import build_model  # noqa: E402

# (its own init, the same net with init=lsuv)
CASES = {
    "founding net (2 x 200, relu), kaiming_normal": (["init=kaiming_normal"], ["init=lsuv"]),
    "edge-of-chaos net (100 x 300, tanh, sigma_w^2 = 2, sigma_b^2 = 0.05)": (
        ["experiment=edge_of_chaos", "hydra.mode=RUN", "init.scale=2.0", "model.depth=100"],
        ["init=lsuv", "model.activation=tanh", "model.depth=100", "model.width=300", "trainer.batch_size=128"]),
}


def best(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    device = torch.device("cpu")
    for name, (overrides, with_lsuv) in CASES.items():
        settings = validate(config(*overrides))
        data = datasets.load(settings["data"], device)
        model = build_model(settings, data, device)
        q0 = data.input_second_moment
        t_theory = best(lambda: predictions.for_model(model, settings["model"], q0))
        t_jac = best(lambda: jacobian.for_run(model, data.train_x, 2))
        t_build = best(lambda: build_model(settings, data, device))
        lsuv = validate(config(*with_lsuv))
        t_lsuv = best(lambda: build_model(lsuv, data, device))
        print(f"{name}:\n  predictions.for_model {1000 * t_theory:.1f} ms | jacobian (2 inputs) {1000 * t_jac:.1f} ms | "
              f"building the model {1000 * t_build:.1f} ms | building it with init=lsuv {1000 * t_lsuv:.1f} ms "
              f"(its data pass: {1000 * (t_lsuv - t_build):.1f} ms)", flush=True)


if __name__ == "__main__":
    main()
