"""CUDA-graph steps (graphs.py): the bookkeeping around a replayed step, checked on the CPU.

A captured graph writes each step's outputs (the loss, the probes' values) into the same
tensors every replay and reads the parameters, gradients and optimizer state where the capture
found them. `ReplayedEagerly` stands in for it here: its "replay" runs the step eagerly, copies
the outputs into the tensors the capture returned and spoils the fresh ones (NaN), so a loop that
kept a loss past the next step, or read probe values the graph does not write, records different
numbers. With it, a run and a stacked group record exactly what the eager loop records. On a GPU,
tests/test_gpu.py compares real graphs with the eager loop.
"""

import pandas as pd
import pytest
import torch

from initlab.train.gpu import graphs
from initlab.config.check import validate
from initlab.stacked.group import GroupTraining
from initlab.train.loop import Training

from conftest import make_config
from replayed_graphs import ReplayedEagerly

SMALL = ("data=synthetic", "data.source.num_train=1000", "data.source.num_test=200", "model.width=48",
         "model.depth=3", "trainer.max_steps=23", "trainer.log_every=3", "trainer.jacobian_inputs=0")


def _same(a, b):
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)


def _single(*overrides):
    training = Training(validate(make_config(*SMALL, *overrides)), torch.device("cpu"))
    status = training.fit()
    return training, training.outcome(status)


@pytest.mark.parametrize("extra", [
    ("optim=sgd",),
    ("optim=momentum", "lr=warmup", "lr.value=0.1", "lr.warmup_epochs=2"),  # the rate changes every step
    ("optim=adam", "trainer.batch_size=64"),  # 1000 = 15 x 64 + 40: two batch shapes
])
def test_a_replayed_run_records_what_the_eager_loop_records(replayed, extra):
    eager_training, eager = _single("trainer.cuda_graphs=false", *extra)
    graphed_training, graphed = _single(*extra)
    assert eager_training.graphs is None and graphed_training.graphs is not None
    assert ReplayedEagerly.captures >= 3  # record, its after-step values, plain (and a last, shorter batch)
    _same((graphed.layers, graphed.curves), (eager.layers, eager.curves))
    assert graphed.metrics == eager.metrics


MEMBERS = [("init=xavier_uniform", "lr.value=0.05"), ("init=kaiming_normal", "trainer.seed=3"),
           ("init=orthogonal", "lr=warmup", "lr.value=0.1", "lr.warmup_epochs=2")]


def _group(*overrides, members=MEMBERS):
    group = GroupTraining([validate(make_config(*SMALL, *m, *overrides)) for m in members], torch.device("cpu"))
    group.fit()
    return group, [group.outcome(k) for k in range(len(members))]


@pytest.mark.parametrize("extra", [("optim=sgd",), ("optim=momentum", "optim.nesterov=true"),
                                   ("optim=adam", "trainer.batch_size=64"), ("optim=adamw",)])
def test_a_replayed_group_records_what_the_eager_loop_records(replayed, extra):
    eager_group, eager = _group("trainer.cuda_graphs=false", *extra)
    graphed_group, graphed = _group(*extra)
    assert eager_group.graphs is None and graphed_group.graphs is not None
    for g, e in zip(graphed, eager):
        _same((g.layers, g.curves), (e.layers, e.curves))
        assert g.metrics == e.metrics


def test_a_diverging_member_is_frozen_under_graphs_too(replayed):
    members = [("lr.value=0.05",), ("init=normal", "lr.value=100")]
    outcomes = {on: _group(f"trainer.cuda_graphs={on}", members=members)[1] for on in ("true", "false")}
    assert [o.status for o in outcomes["true"]] == ["completed", "diverged"]
    for g, e in zip(outcomes["true"], outcomes["false"]):
        _same((g.layers, g.curves), (e.layers, e.curves))


def test_graphs_are_for_cuda_devices_only():
    trainer = validate(make_config())["trainer"]
    assert trainer["cuda_graphs"] is True
    assert graphs.wanted(trainer, torch.device("cuda", 0))
    assert not graphs.wanted(trainer, torch.device("cpu"))
    assert not graphs.wanted({**trainer, "cuda_graphs": False}, torch.device("cuda", 0))


def test_a_finished_run_or_group_and_its_graphs_go_without_the_garbage_collector(replayed):
    """Their memory (on a GPU, the graphs' pool) is freed when the group is, not at some later collection."""
    import gc
    import weakref

    gc.disable()
    try:
        group, outcomes = _group("optim=sgd")
        training, outcome = _single("optim=sgd")
        assert group.graphs is not None and training.graphs is not None
        gone = [weakref.ref(group), weakref.ref(training)]
        del group, outcomes, training, outcome
        assert [ref() for ref in gone] == [None, None]
    finally:
        gc.enable()
