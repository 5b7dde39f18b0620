"""The vectorized launcher: each member's records equal its ordinary run's, to float tolerance."""

import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from initlab.config.check import validate
from initlab.stacked.group import GroupTraining, group_key
from initlab.report.tables import load
from initlab.train.runner import run
from initlab.build.data import load as load_data, shapes as data_shapes
from initlab.stacked.sizes import CPU_TENSOR_BYTES, member_tensor_bytes

from conftest import make_config, run_initlab
from test_sweeps import BIGGER, initlab_cmd, run_cli, summaries

SMALL = ("data=synthetic", "data.source.num_train=1000", "data.source.num_test=200", "model.width=48",
         "model.depth=3", "trainer.max_steps=20", "trainer.log_every=1")


def assert_same(member, ordinary, rtol=2e-4, atol=1e-6):
    """Two runs' tables hold the same rows and the same numbers up to float rounding."""
    for got, want in ((member.layers, ordinary.layers), (member.curves, ordinary.curves)):
        keys = [c for c in ("metric", "step", "layer") if c in want]
        got, want = got.sort_values(keys, ignore_index=True), want.sort_values(keys, ignore_index=True)
        pd.testing.assert_frame_equal(got.drop(columns="value"), want.drop(columns="value"))
        assert np.allclose(got.value, want.value, rtol=rtol, atol=atol, equal_nan=True), \
            (got.value - want.value).abs().max()
    assert member.status == ordinary.status


def train_group(configs):
    settings = [validate(c) for c in configs]
    assert len({group_key(s) for s in settings}) == 1
    group = GroupTraining(settings, torch.device("cpu"))
    group.fit()
    return [group.outcome(k) for k in range(len(settings))]


@pytest.mark.parametrize("optim, rtol", [
    (("optim=sgd",), 2e-4), (("optim=momentum",), 2e-4),
    (("optim=momentum", "optim.nesterov=true", "optim.weight_decay=0.01"), 2e-4),
    # Adam divides by sqrt(v): a weight whose gradient is rounding noise moves by ~lr either way,
    # so one ulp of difference (each step matches torch.optim.Adam to 1 ulp) soon becomes lr-sized.
    # Compared over the first steps only.
    (("optim=adam", "trainer.max_steps=4"), 2e-4),
    (("optim=adamw", "trainer.max_steps=4"), 2e-4),  # decay applied to the weights, not the gradient
    # the parameterizations' multipliers and per-layer learning-rate and decay factors (build/param.py)
    (("optim=momentum", "optim.weight_decay=0.01", "param=mup", "param.base_width=16", "param.zero_readout=true"), 2e-4),
    # (not with a zero readout: the first steps' hidden gradients are then near 0, and Adam turns their rounding into lr-sized moves)
    (("optim=adamw", "trainer.max_steps=4", "param=mup", "param.base_width=16"), 2e-4),
    # (NTK over 12 steps: at step 16 one member's ReLU unit sits at 0 and rounding flips it: 1e-7 before, 7e-4 there)
    (("optim=sgd", "param=ntk", "param.base_width=16", "trainer.max_steps=12"), 2e-4),
])
def test_members_follow_their_ordinary_runs(tmp_path, optim, rtol):
    members = [("init=xavier_uniform", "lr.value=0.05"), ("init=kaiming_normal", "lr.value=0.01", "trainer.seed=3"),
               ("init=orthogonal", "lr=warmup", "lr.value=0.1", "lr.warmup_epochs=2"),
               ("init=normal", "init.std=0.1", "lr=cosine", "lr.value=0.02"),
               # the mean-field parameterization, and a torch function named directly as the init
               ("init=variance_scaling", "init.scale=1.5", "bias=normal", "bias.std=0.1", "trainer.seed=5"),
               ("init=orthogonal", "init._target_=torch.nn.init.orthogonal_", "bias=torch_default", "trainer.seed=6"),
               # data-dependent (LSUV) and theory-dependent (gain=critical) inits
               ("init=lsuv", "trainer.seed=7"), ("init=orthogonal", "init.gain=critical", "bias=normal", "bias.std=0.1")]
    configs = [make_config(*SMALL, *optim, *m) for m in members]
    outcomes = train_group(configs)
    for k, config in enumerate(configs):
        ordinary = run(config, output_dir=tmp_path / str(k))
        assert_same(outcomes[k], ordinary, rtol=rtol)
        # the measurements at init are the member's own, as its ordinary run's
        assert outcomes[k].jacobian == pytest.approx(ordinary.summary["jacobian"], rel=1e-6)
        assert outcomes[k].theory["chi1"] == pytest.approx(ordinary.summary["theory"]["chi1"], rel=1e-9)


def test_a_diverging_member_does_not_poison_the_others(tmp_path):
    configs = [make_config(*SMALL, "lr.value=1e6"), make_config(*SMALL, "lr.value=0.05"),
               make_config(*SMALL, "init=lecun_normal", "lr.value=0.05")]
    outcomes = train_group(configs)
    assert [o.status for o in outcomes] == ["diverged", "completed", "completed"]
    for k, config in enumerate(configs[1:], 1):  # the healthy members are exactly their ordinary runs
        assert_same(outcomes[k], run(config, output_dir=tmp_path / str(k)))
    # The diverging one stops where its ordinary run stops, with the same rows (its numbers are
    # astronomically large by then, so only their first step is compared).
    alone = run(configs[0], output_dir=tmp_path / "0")
    assert outcomes[0].context.diverged_at_step == alone.summary["diverged_at_step"]
    assert outcomes[0].steps == alone.metrics["steps"] and len(outcomes[0].layers) == len(alone.layers)
    first = outcomes[0].layers[outcomes[0].layers.step == 0].value.to_numpy()
    assert np.allclose(first, alone.layers[alone.layers.step == 0].value.to_numpy(), rtol=2e-4)


@pytest.mark.slow
def test_early_stop_of_one_member_matches_its_ordinary_run(tmp_path):
    # Real MNIST: the founding failure gets stuck (and stops) within a few hundred steps, its
    # Kaiming twin in the same group trains on.
    stop = ("experiment=stuck_loss", "trainer.stop_on=[stuck]", "trainer.max_steps=500", "trainer.progress=false")
    configs = [make_config(*stop), make_config(*stop, "init=kaiming_normal")]
    outcomes = train_group(configs)
    ordinary = [run(c, output_dir=tmp_path / str(k)) for k, c in enumerate(configs)]
    assert ordinary[0].summary["stopped_early"] is not None
    for outcome, plain in zip(outcomes, ordinary):
        assert outcome.stopped == plain.summary["stopped_early"] and outcome.steps == plain.metrics["steps"]
    assert_same(outcomes[0], ordinary[0])
    # 500 SGD steps of a live ReLU net: rounding differences (baddbmm vs addmm) have grown to ~1%
    # in the noisiest batch statistics by then; the rows are the same, the numbers close.
    assert_same(outcomes[1], ordinary[1], rtol=0.05, atol=1e-3)


def test_incompatible_runs_get_different_groups():
    a, b = validate(make_config(*SMALL)), validate(make_config(*SMALL, "model.depth=4"))
    c, d = validate(make_config(*SMALL, "init=orthogonal", "lr.value=0.3", "trainer.seed=5")), validate(
        make_config(*SMALL, "optim=adam"))
    assert group_key(a) == group_key(c) and group_key(a) != group_key(b) and group_key(a) != group_key(d)


def test_launcher_writes_ordinary_job_folders_splits_groups_and_resumes(tmp_path):
    args = ["-m", *SMALL, "init=xavier_uniform,kaiming_normal,orthogonal", "lr.value=0.1,0.01"]
    run_cli(*args, "hydra.sweep.dir=basic", cwd=tmp_path)
    result = run_cli(*args, "hydra/launcher=vectorized", "hydra.launcher.max_group_size=4",
                     "hydra.sweep.dir=vec", cwd=tmp_path)
    assert "6 to train in 2 stacked group(s) of 4, 2" in result.stdout
    basic, vec = load([tmp_path / "basic"]), load([tmp_path / "vec"])
    assert sorted(basic.runs.run) == sorted(vec.runs.run)
    for name in basic.runs.run:
        files = {p.relative_to(tmp_path / "basic" / name) for p in (tmp_path / "basic" / name).rglob("*")}
        assert files == {p.relative_to(tmp_path / "vec" / name) for p in (tmp_path / "vec" / name).rglob("*")}
        a = basic.layers[basic.layers.run == name].sort_values(["metric", "step", "layer"]).value.to_numpy()
        b = vec.layers[vec.layers.run == name].sort_values(["metric", "step", "layer"]).value.to_numpy()
        assert np.allclose(a, b, rtol=2e-4, atol=1e-6)
        # Hydra's own files say the same as the basic launcher's, but for where and how they ran.
        hydra_files = [tmp_path / sweep / name / ".hydra" for sweep in ("basic", "vec")]
        for file in ("config.yaml", "overrides.yaml"):
            assert (hydra_files[0] / file).read_text() == (hydra_files[1] / file).read_text()
        where = ("launcher", "sweep", "runtime.output_dir", "runtime.choices.hydra/launcher", "overrides.hydra")
        def what(folder):
            hydra = OmegaConf.to_container(OmegaConf.load(folder / "hydra.yaml").hydra)
            for key in where:
                *path, last = key.split(".") if "/" not in key else ["runtime", "choices", key.split(".")[-1]]
                node = hydra
                for part in path:
                    node = node[part]
                node.pop(last)
            return hydra
        assert what(hydra_files[0]) == what(hydra_files[1])
    again = run_cli(*args, "hydra/launcher=vectorized", "hydra.sweep.dir=vec", cwd=tmp_path)
    assert "6 already finished, 0 to train" in again.stdout and again.stdout.count("skipped:") == 6


@pytest.mark.slow  # a 60-job sweep through the CLI; test_group_sizes_come_from_the_datas_own_shapes keeps the sizing fast
def test_cpu_groups_keep_each_steps_tensors_small(tmp_path):
    # The founding net's first layer is 784 x 200 floats per member: 26 members stay below 16 MB.
    settings = validate(make_config("data=synthetic"))
    assert member_tensor_bytes(settings, 784, 10) == 4 * 784 * 200
    assert CPU_TENSOR_BYTES // member_tensor_bytes(settings, 784, 10) == 26
    wide = validate(make_config("data=synthetic", "model.width=2000", "trainer.batch_size=64"))
    assert member_tensor_bytes(wide, 784, 10) == 4 * 2000 * 2000
    result = run_cli("-m", "data=synthetic", "trainer.max_steps=1", "trainer.seed=range(0,60)",
                     "hydra/launcher=vectorized", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert "60 to train in 3 stacked group(s) of 26, 26, 8" in result.stdout


def test_group_sizes_come_from_the_datas_own_shapes():
    mnist = validate(make_config())["data"]
    header = data_shapes(mnist)  # read from the idx header, before anything is decoded
    loaded = load_data(mnist, torch.device("cpu"))
    assert header == (loaded.in_features, loaded.num_classes) == (784, 10)
    narrow = validate(make_config("data=synthetic", "data.source.in_features=20", "data.source.num_classes=3"))
    assert data_shapes(narrow["data"]) == (20, 3)
    # layers 20 -> 200 -> 200 -> 3: the largest per-step tensor is 200 x 200 (a weight, or a batch's activations)
    assert member_tensor_bytes(narrow, *data_shapes(narrow["data"])) == 4 * 200 * 200


def test_a_callback_at_job_end_finds_the_records_on_disk(tmp_path):
    # The launcher writes files on a background thread, but not when a callback may read them.
    # (In this process, conftest.run_initlab, where tests/ is on sys.path; PYTHONPATH for INITLAB_TEST_SUBPROCESS=1.)
    tests = os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])
    result = run_initlab(["-m", *SMALL, "trainer.seed=0,1,2", "hydra/launcher=vectorized", "hydra.sweep.dir=sweep",
                          "+hydra.callbacks.probe._target_=job_end_probe.RecordsAtJobEnd"], tmp_path,
                         env={"PYTHONPATH": tests})
    assert result.returncode == 0, result.stderr[-2000:]
    seen = [p.read_text() for p in (tmp_path / "sweep").glob("*/records_at_job_end.txt")]
    assert seen == ["True"] * 3


@pytest.mark.slow
def test_kill_during_a_later_group_keeps_the_finished_groups_and_resumes(tmp_path):
    # 3 groups of 2; kill -9 once group 1's folders are written and before the sweep ends.
    args = ["-m", *BIGGER, "init=xavier_uniform,kaiming_normal,orthogonal", "lr.value=0.1,0.01",
            "hydra/launcher=vectorized", "hydra.launcher.max_group_size=2", "hydra.sweep.dir=sweep"]
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(initlab_cmd(*args), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline, killed_with = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None:
        if len(summaries(sweep)) >= 2:
            os.killpg(proc.pid, signal.SIGKILL)
            killed_with = summaries(sweep)
            break
        time.sleep(0.05)
    proc.wait()
    assert killed_with is not None and 2 <= len(killed_with) < 6, "the sweep was not killed between groups"
    before = {name: path.stat().st_mtime_ns for name, path in summaries(sweep).items()}
    for name in before:  # what landed before the kill is whole: it loads and reports
        assert load([sweep / name]).runs.status.tolist() == ["completed"]

    again = run_cli(*args, cwd=tmp_path)
    assert f"{len(before)} already finished, {6 - len(before)} to train" in again.stdout
    after = summaries(sweep)
    assert len(after) == 6 and {n: after[n].stat().st_mtime_ns for n in before} == before
    runs = load([sweep]).runs
    assert sorted(runs.status) == ["completed"] * 6 and not list(sweep.rglob("*.tmp*"))


def test_collections_pause_the_oldest_generation_while_planning_only():
    # vectorized.FewerCollections: no full collection while the plan's configs pile up; once settled
    # they are frozen and full collections run again (a finished group's cyclic garbage, GPU memory
    # among it, must not wait for the sweep's end); stop() puts everything back.
    import gc

    from initlab.sweep.fewer_collections import FewerCollections

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    collections = FewerCollections(threshold=50_000, planning_threshold=1_000_000)
    try:
        collections.start()
        assert gc.get_threshold() == (max(before[0], 50_000), before[1], 1_000_000)
        planned = [{"config": k} for k in range(1000)]  # alive from the plan to the end
        collections.settle()
        assert gc.get_threshold() == (max(before[0], 50_000), *before[1:])
        assert gc.get_freeze_count() >= frozen + len(planned)
        # a config let go after it was frozen (cluster.py releases the submitted jobs'): freed by collect()
        import weakref

        class Config(dict):
            pass

        let_go = Config()
        let_go["self"] = let_go  # a cycle, as an OmegaConf node's parent link makes
        collections.settle()
        alive = weakref.ref(let_go)
        del let_go
        gc.collect()
        assert alive() is not None  # frozen: no collection sees it
        collections.collect()
        assert alive() is None
        assert gc.get_threshold() == (max(before[0], 50_000), *before[1:])
    finally:
        collections.stop()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_groups_job_numbers_read_as_ranges():
    from initlab.sweep.jobs import job_ranges

    assert job_ranges(list(range(256))) == "#0-#255"
    assert job_ranges([1, 3, 4, 5, 9]) == "#1, #3-#5, #9"
    assert job_ranges([7]) == "#7"


def test_a_members_evaluation_does_not_depend_on_its_group():
    """evaluate_members: each member's numbers are bit for bit the same in a group of 1, 3 or 12 (and
    with a budget that makes it take the members a few at a time), and equal training.evaluate's alone."""
    from initlab.build.model import MLP
    from initlab.stacked.models import EVAL_ROWS, StackedMLP, evaluate_members
    from initlab.train.loop import evaluate

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2 * EVAL_ROWS + 321, 20, generator=g), torch.randint(0, 10, (2 * EVAL_ROWS + 321,), generator=g)
    models = []
    for k in range(12):
        torch.manual_seed(k)
        models.append(MLP(20, 10, depth=2, width=24, activation="relu" if k % 2 else "tanh"))
    models = [m for m in models if m.activation_names[0] == "relu"]  # one architecture per group
    everyone = evaluate_members(StackedMLP(models), x, y)
    for members, budget in (([0], None), ([1, 2, 3], None), (range(len(models)), 3 * EVAL_ROWS * 24)):
        group = evaluate_members(StackedMLP([models[i] for i in members]), x, y, budget=budget)
        assert group == [everyone[i] for i in members]
    for model, ev in zip(models, everyone):
        alone = evaluate(model, x, y)
        assert (ev.dead_fraction, ev.dead_outputs) == (alone.dead_fraction, alone.dead_outputs)
        assert ev.loss == pytest.approx(alone.loss, rel=1e-6) and ev.accuracy == alone.accuracy


@pytest.mark.slow  # three groups trained; test_members_follow_their_ordinary_runs keeps the members exact in the fast part
def test_a_members_records_do_not_depend_on_the_size_of_its_group(tmp_path):
    """The same sweep in groups of 4 + 2 and in one group of 6 writes the same records, bit for bit
    (on the CPU): a resumed or clustered sweep may train a member in a group of another size.
    Real MNIST's 10,000 test images: a group's evaluation takes them in several passes."""
    args = ["-m", "trainer.max_steps=20", "trainer.log_every=5", "init=xavier_uniform,kaiming_normal,orthogonal",
            "lr.value=0.1,0.01", "hydra/launcher=vectorized"]
    for size in (4, 6):
        run_cli(*args, f"hydra.launcher.max_group_size={size}", f"hydra.sweep.dir=groups_of_{size}", cwd=tmp_path)
    a, b = load([tmp_path / "groups_of_4"]), load([tmp_path / "groups_of_6"])
    assert len(a.runs) == 6
    for table in ("layers", "curves"):
        keys = ["run", "metric", "step"] + (["layer"] if table == "layers" else [])
        mine, theirs = (getattr(r, table).sort_values(keys, ignore_index=True) for r in (a, b))
        pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
    when = ["path", "wall_time_s"]  # where and how long, not what
    mine, theirs = (r.runs.drop(columns=when).sort_values("run", ignore_index=True) for r in (a, b))
    pd.testing.assert_frame_equal(mine, theirs, check_exact=True)


@pytest.mark.parametrize("setting, value, says", [
    ("max_group_size", 0, "hydra.launcher.max_group_size=0: must be an integer >= 1, or null (as many as"),
    ("max_group_size", -3, "hydra.launcher.max_group_size=-3: must be an integer >= 1"),
    ("max_group_size", 2.5, "hydra.launcher.max_group_size=2.5: must be an integer >= 1"),
    ("memory_fraction", 2.0, "hydra.launcher.memory_fraction=2.0: must be a number in (0, 1]: the share"),
    ("memory_fraction", 0, "hydra.launcher.memory_fraction=0: must be a number in (0, 1]"),
    ("write_workers", -1, "hydra.launcher.write_workers=-1: must be an integer >= 0 (0: the launcher writes"),
    ("parallel_groups", 0, "hydra.launcher.parallel_groups=0: must be an integer >= 1: groups training at once"),
    ("params", {"max_num_timeout": -1},  # a submitit launcher's key for its executor
     "hydra.launcher.max_num_timeout=-1: must be an integer >= 0: how many times submitit requeues a group"),
    ("devices", "one GPU more than here", None),
    ("devices", ["gpu0"], "hydra.launcher.devices=['gpu0']: must be a list of auto, cpu, cuda, cuda:N or mps, or null"),
])
def test_a_wrong_launcher_value_is_named_with_what_is_allowed(setting, value, says):
    from types import SimpleNamespace

    from initlab.config.check import ConfigError
    from initlab.sweep.vectorized import check_launcher

    if value == "one GPU more than here":
        n = torch.cuda.device_count()
        value = ["cpu", f"cuda:{n}"]
        says = f"hydra.launcher.devices[1]=cuda:{n}: " + ("no CUDA GPU here" if n == 0 else f"this machine has {n} CUDA GPU(s)")
    launcher = SimpleNamespace(max_group_size=None, memory_fraction=0.5, write_workers=None, devices=None)
    check_launcher(launcher)  # the defaults pass
    setattr(launcher, setting, value)
    with pytest.raises(ConfigError) as e:
        check_launcher(launcher)
    assert str(e.value).startswith(says) and "\n" not in str(e.value)


def test_a_wrong_launcher_value_stops_the_sweep_with_one_line_before_anything_trains(tmp_path):
    # before the check, a negative group size planned no group and ended in an AttributeError traceback
    result = run_cli("-m", *SMALL, "init=xavier_uniform,kaiming_normal", "hydra/launcher=vectorized",
                     "hydra.launcher.max_group_size=-3", "hydra.sweep.dir=sweep", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("initlab: hydra.launcher.max_group_size=-3: must be an integer")
    assert not list((tmp_path / "sweep").glob("*/summary.json"))


def test_training_takes_each_weight_gradient_straight_from_the_stacked_layer():
    """A training forward feeds the stacked weights to StackedLinear as they are: a view of them (even
    w[:]) would add a backward that copies every weight gradient into a new tensor at each step."""
    from initlab.build.model import MLP
    from initlab.stacked.models import StackedMLP

    net = StackedMLP([MLP(20, 10, depth=2, width=8) for _ in range(3)])
    nodes, todo = [], [net(torch.randn(3, 5, 20)).grad_fn]
    while todo:  # every node of the backward graph
        node = todo.pop()
        if node is not None and node not in nodes:
            nodes.append(node)
            todo += [f for f, _ in node.next_functions]
    fed = [[getattr(f, "variable", None) for f, _ in node.next_functions[1:]]
           for node in nodes if type(node).__name__ == "StackedLinearBackward"]
    assert len(fed) == len(net.weights)
    assert all(any(w is wb[0] and b is wb[1] for wb in fed) for w, b in zip(net.weights, net.biases))


@pytest.mark.parametrize("log_steps, eval_steps", [
    ([0, 5, 10], [9, 19]),  # the first log step comes first
    ([5, 10], [0, 9]),  # an evaluation before any log step
    ([3, 10], [3, 9]),  # a tie: the log step's row comes first in the table
    ([], [9, 19]),  # nothing logged
    ([], []),  # nothing recorded at all: no predictions either
])
def test_predicted_rows_joined_in_the_tables_equal_with_predictions(log_steps, eval_steps):
    """member_records.member_tables adds the theory's predicted rows in its one concatenation: the layers table
    predictions.with_predictions makes from the table without them (ordinary runs add them that way)."""
    from initlab.train import predictions as theory_rows
    from initlab.stacked.member_records import member_tables

    metrics, n_layers = ["weight_grad_norm", "act_std"], 3
    values = np.random.default_rng(0).random((len(log_steps), n_layers, len(metrics)))
    index = np.array([(s, 1 + s // 10) for s in log_steps], dtype=np.int64).reshape(-1, 2)
    # (evaluation rows carry another epoch number here, so that which row is first shows in the epoch)
    eval_rows = [(s, 7 + s // 10, layer, "eval_dead_fraction", 0.1 * layer) for s in eval_steps for layer in range(n_layers)]
    predictions = {"predicted_preact_std": [1.0, 0.5, 0.25]}
    plain, _ = member_tables(values, index, metrics, eval_rows, [])
    joined, _ = member_tables(values, index, metrics, eval_rows, [], predictions=predictions)
    pd.testing.assert_frame_equal(joined, theory_rows.with_predictions(predictions, plain))
    assert (joined.metric == "predicted_preact_std").sum() == (3 if log_steps or eval_steps else 0)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_a_groups_measurements_at_init_are_each_members_own(activation, monkeypatch):
    """stacked/at_init.py measures every member in one batched pass: the symmetric layers, the theory's
    predictions and the Jacobian's Gram matrix each equal what the ordinary run measures on the member's
    own net (train/loop.py Training), including members the theory leaves out and a symmetric one."""
    from initlab.build.data import load as load_data
    from initlab.stacked import at_init
    from initlab.stacked.models import StackedMLP
    from initlab.train import jacobian, predictions
    from initlab.train.loop import build_model, symmetric_of

    common = ("data=synthetic", "data.source.num_train=600", "data.source.num_test=100", "model.width=24",
              "model.depth=3", f"model.activation={activation}", "trainer.jacobian_inputs=3")
    members = [("init=kaiming_normal",), ("init=orthogonal", "trainer.seed=1"), ("init=constant",),
               ("init=uniform",), ("init=xavier_normal", "bias=constant", "bias.value=-0.2", "trainer.seed=2")]
    settings = [validate(make_config(*common, *m)) for m in members]
    assert len({group_key(s) for s in settings}) == 1
    cpu = torch.device("cpu")
    data = load_data(settings[0]["data"], cpu)
    models = [build_model(s, data, cpu) for s in settings]
    net = StackedMLP([build_model(s, data, cpu) for s in settings])
    q0 = data.input_second_moment
    assert at_init.symmetric_layers(net) == [symmetric_of(m) for m in models]
    assert at_init.symmetric_layers(net)[2] == [0, 1, 2]  # the constant init: every hidden layer
    batched = at_init.theory(net, settings[0]["model"], q0)
    for got, model in zip(batched, models):
        want = predictions.for_model(model, settings[0]["model"], q0)
        assert got.keys() == want.keys() and got["applies"] == want["applies"] and got["why_not"] == want["why_not"]
        for key, value in want.items():
            if isinstance(value, (list, float)):
                assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-15), key
    assert [t["applies"] for t in batched] == [True, True, False, False, True]
    for got, model in zip(at_init.grams(net, data.train_x, 3), models):
        want = jacobian.gram_for_run(model, data.train_x, 3)
        assert got.shape == want.shape == (3, 24, 24)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-12), (got - want).abs().max()
    whole = at_init.grams(net, data.train_x, 3)
    monkeypatch.setattr(at_init, "GRAM_CHUNK_BYTES", 2 * 3 * 3 * 24 * 24 * 8)  # two members at a time
    assert all(torch.equal(a, b) for a, b in zip(at_init.grams(net, data.train_x, 3), whole))
