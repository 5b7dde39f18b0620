"""Sweeps that survive and scale: resume after kill -9, failure isolation, launchers, Optuna."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from initlab.build import environment
from initlab.sweep.job_names import job_dirname
from initlab.report.tables import load

from conftest import run_initlab
from test_cli import SMALL

BIGGER = ["data=synthetic", "data.source.num_train=20000", "data.source.num_test=200", "model.width=128",
          "trainer.epochs=2", "trainer.log_every=5"]


def initlab_cmd(*args):
    return [sys.executable, "-m", "initlab", *args]


def run_cli(*args, cwd, check=True):
    """`initlab <args>` from `cwd` (in this process: conftest.run_initlab)."""
    result = run_initlab(list(args), cwd)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def summaries(sweep):
    return {p.parent.name: p for p in sweep.glob("*/summary.json")}


def test_job_folders_are_named_by_configuration():
    assert job_dirname("init=xavier_uniform,lr.value=0.1") == "init=xavier_uniform,lr.value=0.1"
    odd = job_dirname("init=he2015/small_normal,model.depth=30")
    assert "/" not in odd and odd.startswith("init=he2015_small_normal,model.depth=30-")
    assert job_dirname("init=he2015/small_normal") != job_dirname("init=he2015_small_normal")
    assert len(job_dirname("x=" + "1" * 500)) < 100 and job_dirname("") == "default"


@pytest.mark.slow
def test_killed_sweep_resumes_without_rerunning_or_duplicating(tmp_path):
    args = ["-m", *BIGGER, "init=xavier_uniform,kaiming_normal,orthogonal,lecun_normal", "hydra.sweep.dir=sweep"]
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(initlab_cmd(*args), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline, mid_run = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None:
        done = summaries(sweep)
        running = [p for p in sweep.glob("*/.hydra") if p.parent.name not in done] if sweep.exists() else []
        if len(done) >= 2 and running:
            os.killpg(proc.pid, signal.SIGKILL)
            mid_run = running[0].parent.name
            break
        time.sleep(0.05)
    proc.wait()
    assert mid_run is not None, "the sweep ended before it could be killed mid-run"
    before = {name: path.stat().st_mtime_ns for name, path in summaries(sweep).items()}
    assert mid_run not in before and len(before) >= 2

    result = run_cli(*args, cwd=tmp_path)
    after = summaries(sweep)
    assert len(after) == 4 and len(list(sweep.glob("*/.hydra"))) == 4  # every configuration once
    assert {n: after[n].stat().st_mtime_ns for n in before} == before  # finished jobs untouched
    assert result.stdout.count("skipped:") == len(before)
    runs = load([sweep]).runs
    assert sorted(runs.status) == ["completed"] * 4 and runs["init"].nunique() == 4
    assert not list(sweep.rglob("*.tmp*"))


@pytest.mark.slow  # three CLI processes
def test_rerun_true_trains_finished_jobs_again(tmp_path):
    args = ["-m", *SMALL, "trainer.max_steps=3", "init=xavier_uniform", "hydra.sweep.dir=sweep"]
    run_cli(*args, cwd=tmp_path)
    (first,) = summaries(tmp_path / "sweep").values()
    stamp = first.stat().st_mtime_ns
    assert "skipped:" in run_cli(*args, cwd=tmp_path).stdout
    assert "skipped:" not in run_cli(*args, "rerun=true", cwd=tmp_path).stdout
    assert first.stat().st_mtime_ns != stamp


def test_diverging_and_raising_jobs_are_recorded_and_the_sweep_goes_on(tmp_path):
    # torch.nn.init.dirac_ takes only 3- to 5-dimensional tensors: on a Linear weight it raises at run
    # time, a real bad combination that no config check can see.
    result = run_cli("-m", *SMALL, "trainer.max_steps=20", "init=zeros",
                     "init._target_=torch.nn.init.dirac_,torch.nn.init.eye_", "lr.value=1e6,0.01",
                     "hydra.sweep.dir=sweep", cwd=tmp_path, check=False)
    assert result.returncode == 1
    by_config = {}
    for path in (tmp_path / "sweep").glob("*/summary.json"):
        s = json.loads(path.read_text())
        by_config[(s["config"]["init"]["_target_"].rsplit(".", 1)[-1], s["config"]["lr"]["value"])] = (s, path.parent)
    assert {k: v[0]["status"] for k, v in by_config.items()} == {
        ("dirac_", 1e6): "failed", ("dirac_", 0.01): "failed", ("eye_", 1e6): "diverged", ("eye_", 0.01): "completed"}
    failed, folder = by_config[("dirac_", 0.01)]
    assert failed["error"]["type"] == "ValueError" and "dimensions are supported" in failed["error"]["message"]
    assert "Traceback" in (folder / "error.txt").read_text()
    assert failed["diagnosis"]["label"] == "failed"
    out = result.stdout
    assert "sweep: 4 runs: 1 completed, 1 diverged, 2 failed, 0 unfinished" in out
    # Reported when it happened: the first failure's line comes before the later jobs' lines.
    assert out.index("failed: ValueError") < out.index("completed |")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["hydra/launcher=parallel", "hydra/launcher=submitit_local"])
def test_launchers_give_the_basic_launchers_results(tmp_path, launcher):
    args = ["-m", *SMALL, "trainer.max_steps=8", "trainer.log_every=2", "init=xavier_uniform,kaiming_normal"]
    run_cli(*args, "hydra.sweep.dir=basic", cwd=tmp_path)
    extra = ["hydra.launcher.n_jobs=2"] if "parallel" in launcher else []
    run_cli(*args, launcher, *extra, "hydra.sweep.dir=other", cwd=tmp_path)
    basic, other = load([tmp_path / "basic"]), load([tmp_path / "other"])
    assert sorted(basic.runs.run) == sorted(other.runs.run)
    for name in basic.runs.run:
        a = basic.layers[basic.layers.run == name].sort_values(["step", "layer", "metric"]).value.to_numpy()
        b = other.layers[other.layers.run == name].sort_values(["step", "layer", "metric"]).value.to_numpy()
        assert len(a) == len(b) > 0 and pd.Series(a).sub(b).abs().max() <= 1e-5 * (1 + abs(a).max())


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=vectorized", "hydra.sweeper.n_jobs=3"]],
                         ids=["basic", "vectorized"])
def test_optuna_search_minimizes_the_final_test_loss(tmp_path, launcher):
    # Optuna asks for trials in batches and never checks a batch first: the vectorized launcher
    # then composes each job itself.
    run_cli("hparams_search=lr_optuna", *SMALL, "trainer.max_steps=10", "hydra.sweeper.n_trials=3", *launcher,
            "hydra.sweep.dir=search", cwd=tmp_path)
    results = (tmp_path / "search" / "optimization_results.yaml").read_text()
    runs = load([tmp_path / "search"]).runs
    assert len(runs) == 3
    best = runs.loc[runs.test_loss.idxmin()]
    assert f"best_value: {best.test_loss}" in results and str(best["lr.value"]) in results


def test_auto_device_spreads_multirun_jobs_over_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [environment.resolve_device("auto", n).index for n in range(5)] == [0, 1, 2, 0, 1]
    assert environment.resolve_device("auto", None) == torch.device("cuda", 0)
    assert environment.resolve_device("cpu", 4) == torch.device("cpu")
