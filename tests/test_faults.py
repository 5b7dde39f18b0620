"""Faults injected into real sweeps: a full disk while records are written, kill -9 at random
moments, two processes resuming one sweep at once, a report read while a sweep is writing.
Whatever happens, a finished run is never lost or trained twice, and nothing half-written is
ever taken for a finished run."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from initlab.store import records
from initlab.report.tables import load
from initlab.report.page import write_report

from conftest import run_initlab
from test_cli import SMALL

FAULTS = Path(__file__).parent / "faults"  # sitecustomize.py: INITLAB_FAULT=enospc:K
INITS = ["xavier_uniform", "kaiming_normal", "orthogonal", "lecun_normal"]


def command(*args, launcher="basic"):
    chosen = ["hydra/launcher=vectorized"] if launcher == "vectorized" else []
    return [sys.executable, "-m", "initlab", "-m", *chosen, *SMALL, *args, "hydra.sweep.dir=sweep"]


def environment(fault=None, threads=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))}
    env.pop("INITLAB_FAULT", None)
    if fault:
        env["INITLAB_FAULT"] = fault
    if threads:  # two torch processes on a 2-core machine: one thread each, or they thrash
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def initlab(*args, cwd, launcher="basic", fault=None):
    return subprocess.run(command(*args, launcher=launcher), cwd=cwd, env=environment(fault), capture_output=True,
                          text=True, timeout=600)


def job_folders(sweep):
    return sorted(p.parent for p in sweep.glob("*/.hydra"))


def assert_nothing_half_written(sweep):
    """Every summary.json belongs to a run whose tables read back whole; no temporary file is left."""
    assert not [p for p in sweep.rglob("*") if ".tmp" in p.name]
    for folder in sweep.iterdir():
        if records.is_finished(folder):
            records.load_run(folder)  # raises if a table or the summary is damaged
        else:  # a table without a summary is allowed (a resumed run writes them again), but whole
            for name in (records.LAYERS, records.CURVES):
                if (folder / name).exists():
                    records.read_table(folder, name)


def finished_summaries(sweep):
    return {p.parent.name: p.read_bytes() for p in sweep.glob("*/summary.json")}


# the basic launcher's case is slow (a sweep through the CLI, then a resume); the vectorized one stays fast
@pytest.mark.parametrize("launcher, fails_at", [pytest.param("basic", 4, marks=pytest.mark.slow), ("vectorized", 4)])
def test_a_full_disk_leaves_no_summary_and_no_half_file_and_a_resume_finishes(tmp_path, launcher, fails_at):
    args = ["trainer.max_steps=3", f"init={','.join(INITS)}"]
    # one run's three files are written, then the disk is full
    result = initlab(*args, cwd=tmp_path, launcher=launcher, fault=f"enospc:{fails_at}")
    out = result.stdout + result.stderr
    sweep = tmp_path / "sweep"
    assert result.returncode == 1 and "records not written (No space left on device" in out
    assert "sweep: 4 runs: 1 completed, 0 diverged, 0 failed, 3 unfinished, 0 corrupt" in out
    assert_nothing_half_written(sweep)
    done = finished_summaries(sweep)
    assert len(done) == 1 and not any((f / records.LAYERS).exists() for f in sweep.iterdir() if f.name not in done)

    again = run_initlab(command(*args, launcher=launcher)[3:], cwd=tmp_path)  # the resume: no fault, in this process
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("skipped:") == 1 and all(finished_summaries(sweep)[n] == b for n, b in done.items())
    assert sorted(load([sweep]).runs.status) == ["completed"] * 4
    assert_nothing_half_written(sweep)


@pytest.mark.parametrize("launcher", [pytest.param("basic", marks=pytest.mark.slow), "vectorized"])
def test_two_processes_resuming_one_sweep_train_each_job_once(tmp_path, launcher):
    args = ["trainer.max_steps=30", f"init={','.join(INITS)}", "trainer.seed=0,1"]
    procs = [subprocess.Popen(command(*args, launcher=launcher), cwd=tmp_path, env=environment(threads=1),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    sweep = tmp_path / "sweep"
    folders = job_folders(sweep)
    assert len(folders) == 8
    for folder in folders:  # trained by exactly one of the two: the other waited and skipped it
        trained = [sum(" steps | " in line and line.endswith(f"| {folder}") for line in out.splitlines()) for out in outs]
        skipped = [out.count(f"skipped: {folder} ") for out in outs]
        assert sorted(trained) == [0, 1] and sorted(skipped) == [0, 1], (folder.name, trained, skipped)
    assert sorted(load([sweep]).runs.status) == ["completed"] * 8
    assert_nothing_half_written(sweep)


@pytest.mark.slow  # a sweep and reports in processes of their own
def test_a_report_read_while_a_sweep_writes_never_crashes(tmp_path):
    args = ["trainer.max_steps=40", f"init={','.join(INITS)}", "trainer.seed=0,1"]
    proc = subprocess.Popen(command(*args), cwd=tmp_path, env=environment(threads=1), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    sweep, reads, seen = tmp_path / "sweep", 0, set()
    while proc.poll() is None:
        if sweep.exists() and job_folders(sweep):
            runs = load([sweep]).runs
            seen |= set(runs.status)
            assert set(runs.status) <= {"completed", "unfinished"}
            reads += 1
            if reads % 10 == 1:
                write_report([sweep], tmp_path / f"report-{reads}")
        time.sleep(0.02)
    assert proc.returncode == 0 and reads >= 5 and seen == {"completed", "unfinished"}
    assert sorted(load([sweep]).runs.status) == ["completed"] * 8


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_gives_every_run_exactly_once(tmp_path):
    # 30 steps each (10 epochs of 600 images; max_steps is not reached), 0.2-0.4 s of training and writing
    args = ["trainer.max_steps=150", "model.width=256", f"init={','.join(INITS)}"]
    # An undisturbed sweep: when its first job starts (start-up before) and when it ends.
    (tmp_path / "timing").mkdir()
    started = time.perf_counter()
    proc = subprocess.Popen(command(*args), cwd=tmp_path / "timing", env=environment(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first_job = None
    while proc.poll() is None:
        if first_job is None and list((tmp_path / "timing").glob("sweep/*/.hydra")):
            first_job = time.perf_counter() - started
        time.sleep(0.01)
    whole = time.perf_counter() - started
    assert proc.returncode == 0 and first_job is not None
    # Two moments in the start-up, six while the jobs run and write their records: one in each
    # sixth of that span, so that the kills spread over every job's training and writing (until
    # 2026-12-06 twenty moments, drawn anywhere: three minutes of the suite).
    rng = random.Random(2026)
    span = (whole - first_job) / 6
    moments = sorted([rng.uniform(0, first_job) for _ in range(2)]
                     + [rng.uniform(first_job + k * span, first_job + (k + 1) * span) for k in range(6)])
    finished_at_kill = []
    for trial, moment in enumerate(moments):
        cwd = tmp_path / f"trial{trial}"
        cwd.mkdir()
        proc = subprocess.Popen(command(*args), cwd=cwd, env=environment(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(moment)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        sweep = cwd / "sweep"
        before = finished_summaries(sweep) if sweep.exists() else {}
        finished_at_kill.append(len(before))
        if sweep.exists():
            assert_nothing_half_written(sweep)
        # the resume in this process (conftest.run_initlab): what a kill leaves is on disk, and the
        # command's start-up, ~2.5 s a trial, proves nothing here (test_two_processes... starts its own)
        result = run_initlab(command(*args)[3:], cwd=cwd)
        assert result.returncode == 0, (moment, result.stderr[-2000:])
        after = finished_summaries(sweep)
        assert len(after) == 4 and len(job_folders(sweep)) == 4, moment  # every configuration once
        assert {n: after[n] for n in before} == before, moment  # nothing finished was trained again
        assert result.stdout.count("skipped:") == len(before), moment
        runs = load([sweep]).runs
        assert sorted(runs.status) == ["completed"] * 4 and runs["init"].nunique() == 4, moment
        assert_nothing_half_written(sweep)
    print(f"sweep {whole:.1f} s, first job at {first_job:.1f} s; killed at {', '.join(f'{m:.2f}' for m in moments)} s; "
          f"runs finished at each kill: {finished_at_kill}")
