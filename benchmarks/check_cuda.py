"""Correctness on a GPU: same seed -> identical tables; a stacked member follows its ordinary run;
CUDA graphs record what the eager loop records; log-step checks read late (finite_checks) record
what checks the loop waits for record.

    python benchmarks/check_cuda.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config  # noqa: E402

from initlab.stacked import group as group_module  # noqa: E402

from initlab.train import loop as training_module
from initlab.config.check import validate  # noqa: E402
from initlab.train.finite_checks import LogStepChecks  # noqa: E402
from initlab.stacked.group import GroupTraining  # noqa: E402
from initlab.train.runner import run  # noqa: E402


class Waited(LogStepChecks):
    """Checks the loop waits for at every log step, as it did before finite_checks."""

    def ready(self, wait=False):
        return super().ready(wait=True)


class Counted(LogStepChecks):
    """The real checks, noting the last step a loop checked (how far it ran before one came back)."""

    last = -1

    def add(self, step, loss):
        Counted.last = max(Counted.last, step)
        super().add(step, loss)


def with_checks(checks, train):
    training_module.LogStepChecks = group_module.LogStepChecks = checks
    try:
        return train()
    finally:
        training_module.LogStepChecks = group_module.LogStepChecks = LogStepChecks


def check_late_checks(tmp: Path) -> None:
    """A run and a group with diverging members record the same whether the loop waits for each
    log step's loss check or reads it when the device has it (finite_checks)."""
    args = ("trainer.max_steps=300", "trainer.device=auto", "trainer.log_every=3", "init=normal", "init.std=1.0")
    diverging = config(*args, "lr.value=1000")
    waited = with_checks(Waited, lambda: run(diverging, output_dir=tmp / "waited"))
    late = with_checks(Counted, lambda: run(diverging, output_dir=tmp / "late"))
    print(f"diverging run: status {late.status}, stopped after step {late.metrics['steps']}, the loop ran to "
          f"log step {Counted.last}; identical tables to waiting at each log step: "
          f"{late.layers.equals(waited.layers) and late.curves.equals(waited.curves)}")
    members = [validate(config(*args, f"lr.value={lr}")) for lr in (0.01, 1000, 300)]

    def group_outcomes():
        group = GroupTraining(members, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        group.fit()
        return [group.outcome(k) for k in range(len(members))]

    Counted.last = -1
    waited, late = with_checks(Waited, group_outcomes), with_checks(Counted, group_outcomes)
    same = all(x.layers.equals(y.layers) and x.curves.equals(y.curves) for x, y in zip(waited, late))
    print(f"group with diverging members: {[o.status for o in late]}, steps {[o.steps for o in late]}; "
          f"identical tables to waiting at each log step: {same}")


def main() -> None:
    assert torch.cuda.is_available()
    tmp = Path(tempfile.mkdtemp())
    args = ("trainer.max_steps=300", "trainer.device=auto")
    a, b = run(config(*args), output_dir=tmp / "a"), run(config(*args), output_dir=tmp / "b")
    c = run(config(*args, "trainer.seed=1"), output_dir=tmp / "c")
    same = a.layers.equals(b.layers) and a.curves.equals(b.curves)
    print(f"device {a.summary['device']}: same seed identical tables: {same}; "
          f"other seed differs: {not a.layers.value.equals(c.layers.value)}")
    members = [("init=xavier_uniform", "lr.value=0.05"), ("init=kaiming_normal", "trainer.seed=3"),
               ("init=orthogonal", "lr=warmup", "lr.value=0.1")]
    cfgs = [config("trainer.max_steps=20", "trainer.log_every=1", *m) for m in members]
    group = GroupTraining([validate(x) for x in cfgs], torch.device("cuda"))
    group.fit()
    worst = 0.0
    for k, cfg in enumerate(cfgs):
        plain = run(cfg, output_dir=tmp / f"m{k}").layers.sort_values(["metric", "step", "layer"], ignore_index=True)
        mine = group.outcome(k).layers.sort_values(["metric", "step", "layer"], ignore_index=True)
        assert len(plain) == len(mine)
        rel = ((mine.value - plain.value).abs() / (plain.value.abs() + 1e-6)).max()
        worst = max(worst, float(rel))
    print(f"stacked members vs ordinary runs, 20 steps on the GPU: largest relative difference {worst:.2e}")
    print("default run on the GPU:", {k: round(v, 4) for k, v in a.metrics.items()})
    # CUDA graphs (the default on a GPU) against the eager loop: the same kernels, so the same numbers.
    for extra in [(), ("optim=momentum", "lr=warmup", "lr.value=0.1", "trainer.batch_size=128")]:
        g = run(config(*args, *extra), output_dir=tmp / f"g{len(extra)}")
        e = run(config(*args, *extra, "trainer.cuda_graphs=false"), output_dir=tmp / f"e{len(extra)}")
        diff = (g.layers.value - e.layers.value).abs().max()
        print(f"single run {extra or 'default'}: CUDA graphs vs eager, identical tables: "
              f"{g.layers.equals(e.layers) and g.curves.equals(e.curves)} (largest difference {diff:.3g})")
    for extra in [("optim=sgd",), ("optim=momentum", "optim.nesterov=true"), ("optim=adam",)]:
        outcomes = {}
        for on in ("true", "false"):
            cfgs = [validate(config("trainer.max_steps=40", "trainer.log_every=3", "trainer.batch_size=128",
                                    f"trainer.cuda_graphs={on}", *m, *extra)) for m in members]
            group = GroupTraining(cfgs, torch.device("cuda"))
            group.fit()
            outcomes[on] = [group.outcome(k) for k in range(len(cfgs))]
        same = all(x.layers.equals(y.layers) and x.curves.equals(y.curves) for x, y in zip(*outcomes.values()))
        diff = max(float((x.layers.value - y.layers.value).abs().max()) for x, y in zip(*outcomes.values()))
        print(f"stacked group {extra}: CUDA graphs vs eager, identical tables: {same} (largest difference {diff:.3g})")
    check_late_checks(tmp)


if __name__ == "__main__":
    main()
