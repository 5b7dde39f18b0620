"""Log-step loss checks read without waiting for the device (finite_checks.py), checked on the CPU.

On a GPU a check comes back some steps after its log step, and the loop rolls back to it. `Lagging`
stands in for the device here: each check comes back only once `lag` more log steps have been
checked (or when the loop waits). With it, a run and a stacked group must record exactly what they
record when every check comes back at once (the CPU's own path), having run past the step first.
On a GPU, tests/test_gpu.py compares the real checks with ones the loop waits for.
"""

import pandas as pd
import pytest
import torch

from initlab.train import finite_checks

from initlab.stacked import group as group_module

from initlab.train import loop as training_module
from initlab.config.check import validate
from initlab.train.finite_checks import LogStepChecks
from initlab.stacked.group import GroupTraining
from initlab.train.loop import Training

from conftest import make_config
from replayed_graphs import ReplayedEagerly

SMALL = ("data=synthetic", "data.source.num_train=1000", "data.source.num_test=200", "model.width=48",
         "model.depth=3", "trainer.log_every=3", "trainer.jacobian_inputs=0")
DIVERGES = ("init=normal", "init.std=1.0", "lr.value=1000")  # not finite from step 2: stops at log step 3
HEALTHY = ("lr.value=0.05",)
STUCK = ("init=zeros", "model.output_activation=relu")  # no gradient at all: stuck at the first check


class Lagging(LogStepChecks):
    lag = 3
    last_added = -1  # the last step a loop checked: how far it ran

    def add(self, step, loss):
        Lagging.last_added = max(Lagging.last_added, step)
        super().add(step, loss)

    def ready(self, wait=False):
        if wait:
            return super().ready(wait)
        out = []
        while len(self._pending) > self.lag:
            step, finite, _ = self._pending.popleft()
            out.append((step, finite))
        return out


def both(monkeypatch, train, *args, lag=3, **kwargs):
    """train(*args, **kwargs) with checks that come back `lag` log steps late, then with the real ones;
    both results, and the last step the lagged loop checked."""
    monkeypatch.setattr(Lagging, "lag", lag)
    monkeypatch.setattr(Lagging, "last_added", -1)
    with monkeypatch.context() as patched:
        patched.setattr(training_module, "LogStepChecks", Lagging)
        patched.setattr(group_module, "LogStepChecks", Lagging)
        lagged = train(*args, **kwargs)
    return lagged, train(*args, **kwargs), Lagging.last_added


def _single(*overrides):
    training = Training(validate(make_config(*SMALL, *overrides)), torch.device("cpu"))
    status = training.fit()
    return training, training.outcome(status)


def _group(*members, extra=()):
    group = GroupTraining([validate(make_config(*SMALL, *m, *extra)) for m in members], torch.device("cpu"))
    group.fit()
    return group, [group.outcome(k) for k in range(len(members))]


def _same(a, b):
    pd.testing.assert_frame_equal(a.layers, b.layers)
    pd.testing.assert_frame_equal(a.curves, b.curves)
    assert a.status == b.status and a.steps == b.steps and a.stopped == b.stopped
    assert a.context.diverged_at_step == b.context.diverged_at_step
    assert a.metrics == pytest.approx(b.metrics, nan_ok=True)


def test_checks_come_back_in_order_once_and_on_the_host():
    checks = LogStepChecks(torch.device("cpu"))
    checks.add(0, torch.tensor(1.0))
    checks.add(3, torch.tensor([1.0, float("inf"), float("nan")]))
    ready = checks.ready()
    assert [s for s, _ in ready] == [0, 3] and checks.ready(wait=True) == []
    assert ready[1][1].tolist() == [True, False, False] and ready[1][1].device.type == "cpu"
    for loss in (2.0, float("nan"), float("inf")):
        checks.add(6 if loss == 2.0 else 9, torch.tensor(loss))
    assert checks.first_not_finite() == 9 and checks.ready(wait=True) == []  # the rest is dropped


def test_the_stand_in_holds_checks_back():
    checks = Lagging(torch.device("cpu"))
    for step in range(5):
        checks.add(step, torch.tensor(float(step)))
    assert [s for s, _ in checks.ready()] == [0, 1]
    assert [s for s, _ in checks.ready(wait=True)] == [2, 3, 4]


def test_a_diverging_run_stops_at_its_log_step_however_late_the_check_comes(monkeypatch):
    # batch 50: 20 steps an epoch, log steps 0, 3, 6, ...
    (lagged_training, lagged), (training, at_once), ran = both(monkeypatch, _single, *DIVERGES, "trainer.batch_size=50")
    assert at_once.status == "diverged" and at_once.steps == 4 and at_once.context.diverged_at_step == 2
    assert ran == 3 + 3 * Lagging.lag  # it ran past the step before the check came back
    assert lagged_training.step == training.step == 4
    _same(lagged, at_once)


def test_a_run_that_diverges_where_the_epoch_ends_stops_there(monkeypatch):
    # 1000 samples, batch 100: log steps 0, 3, 6, 9 in the first epoch, all still pending at its end.
    (_, lagged), (_, at_once), ran = both(monkeypatch, _single, *DIVERGES, "trainer.batch_size=100", lag=100)
    assert at_once.status == "diverged" and ran == 9
    _same(lagged, at_once)


def test_a_stuck_run_stops_where_it_did(monkeypatch):
    (_, lagged), (_, at_once), _ = both(monkeypatch, _single, *STUCK, "trainer.stop_on=[stuck]", "diagnose.window=20",
                                        "trainer.max_steps=200", "trainer.batch_size=50", lag=100)
    assert at_once.stopped["step"] == 20
    _same(lagged, at_once)


@pytest.mark.parametrize("members", [
    (HEALTHY, DIVERGES, ("init=kaiming_normal", "trainer.seed=3")),  # one frozen, the others go on
    (DIVERGES, ("init=normal", "init.std=1.0", "lr.value=300", "trainer.seed=5")),  # all of them stop
], ids=["one-diverges", "all-diverge"])
def test_a_group_freezes_a_member_at_its_log_step_however_late_the_check_comes(monkeypatch, members):
    (_, lagged), (_, at_once), ran = both(monkeypatch, _group, *members, extra=("trainer.batch_size=50",))
    assert "diverged" in [o.status for o in at_once]
    assert ran > max(o.steps for o in at_once if o.status == "diverged")
    for a, b in zip(lagged, at_once):
        _same(a, b)


def test_a_group_stuck_check_sees_every_check_first(monkeypatch):
    # Every check comes back only when the loop waits: at the stuck check (step 20), or the epoch's end.
    extra = ("trainer.stop_on=[stuck]", "diagnose.window=20", "trainer.max_steps=60", "trainer.batch_size=50")
    (_, lagged), (_, at_once), _ = both(monkeypatch, _group, STUCK, HEALTHY, DIVERGES, extra=extra, lag=100)
    assert [o.status for o in at_once] == ["completed", "completed", "diverged"] and at_once[0].stopped["step"] == 20
    for a, b in zip(lagged, at_once):
        _same(a, b)


def test_on_the_cpu_nothing_is_pinned_or_waited_for(monkeypatch):
    monkeypatch.setattr(torch.cuda, "Event", None)  # would fail if used
    checks = finite_checks.LogStepChecks(torch.device("cpu"))
    checks.add(0, torch.tensor(float("nan")))
    assert checks.first_not_finite() == 0


def test_late_checks_under_replayed_graphs_record_what_the_eager_loop_records(monkeypatch, replayed):
    """A CUDA graph's loss is overwritten by its next replay: the check must hold what it read then."""
    members = (HEALTHY, DIVERGES)
    (_, lagged_run), _, _ = both(monkeypatch, _single, *DIVERGES, "trainer.batch_size=50")
    (_, lagged_group), _, _ = both(monkeypatch, _group, *members, extra=("trainer.batch_size=50",))
    _, eager_run = _single(*DIVERGES, "trainer.batch_size=50", "trainer.cuda_graphs=false")
    _, eager_group = _group(*members, extra=("trainer.batch_size=50", "trainer.cuda_graphs=false"))
    assert ReplayedEagerly.captures > 0
    _same(lagged_run, eager_run)
    for a, b in zip(lagged_group, eager_group):
        _same(a, b)
