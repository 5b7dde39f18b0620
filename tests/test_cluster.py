"""Stacked groups as submitit jobs (initlab/sweep/cluster.py), through submitit's local executor, and
several devices at once in the in-process vectorized launcher (initlab/sweep/workers.py)."""

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import submitit
import submitit.core.core
from omegaconf import OmegaConf

from initlab.store import records
from initlab.report.tables import load

from test_sweeps import run_cli
from test_vectorized import assert_same

GRID = ("data=synthetic", "data.source.num_train=600", "data.source.num_test=100", "model.width=32",
        "trainer.max_steps=12", "trainer.log_every=2", "init=xavier_normal,kaiming_normal", "model.depth=2,3")


def _runs(sweep):
    def with_status(run):
        return SimpleNamespace(layers=run.layers, curves=run.curves, summary=run.summary, status=run.summary["status"])
    return {p.parent.name: with_status(records.load_run(p.parent)) for p in sweep.glob("*/summary.json")}


def _success(result_file):
    """The JobReturns a group's job sent back in its submitit result file."""
    state, returned = pickle.loads(result_file.read_bytes())
    assert state == "success", returned
    return [ret for _, ret in returned]


def _same_sweeps(ours, reference):
    assert set(ours) == set(reference) and len(ours) == 4
    for name, run in ours.items():
        assert_same(run, reference[name])
        assert run.summary["config_hash"] == reference[name].summary["config_hash"]
        assert run.summary["metrics"] == pytest.approx(reference[name].summary["metrics"], rel=1e-4)


def in_process_sweep(root, grid):
    """The in-process vectorized launcher's sweep of `grid` in `root`: its runs by folder name."""
    run_cli("-m", *grid, "hydra/launcher=vectorized", "hydra.sweep.dir=sweep", cwd=root)
    return _runs(root / "sweep")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The in-process vectorized launcher's sweep of GRID."""
    return in_process_sweep(tmp_path_factory.mktemp("reference"), GRID)


@pytest.mark.slow  # submitit jobs in processes of their own
def test_submitit_local_writes_what_the_in_process_launcher_writes(tmp_path, reference):
    # (the initlab command, through a probe that says how many job configs the submitting process holds)
    probe = Path(__file__).parent / "held_configs_probe.py"
    result = subprocess.run([sys.executable, str(probe), "-m", *GRID, "hydra/launcher=vectorized_submitit_local",
                             "hydra.sweep.dir=sweep"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "2 stacked group(s) of 2, 2, one submitit job each" in result.stdout + result.stderr
    # planned, it holds none of the jobs' configs: each group's job makes its own
    assert "held: 0 of 4, kept by the loader 0, tracked 0" in result.stdout
    sweep = tmp_path / "sweep"
    _same_sweeps(_runs(sweep), reference)
    # each member's folder is an ordinary job folder (Hydra's files included), and each group ran as its own job
    for folder in sweep.glob("*/summary.json"):
        assert (folder.parent / ".hydra" / "config.yaml").exists() and (folder.parent / ".hydra" / "overrides.yaml").exists()
    assert len([p for p in (sweep / ".submitit").iterdir() if p.is_dir() and p.name.isdigit()]) == 2  # job ids
    # what a group's job sends back: each member's JobReturn with its return value (the final test loss, what
    # a sweeper reads) and its task config, without the Hydra config its folder holds (cluster_job.light)
    by_overrides = {tuple(OmegaConf.load(p.parent / ".hydra" / "overrides.yaml")): records.load_run(p.parent)
                    for p in sweep.glob("*/summary.json")}
    returned = [ret for f in (sweep / ".submitit").glob("*/*_result.pkl") for ret in _success(f)]
    assert sorted(tuple(ret.overrides) for ret in returned) == sorted(by_overrides)
    for ret in returned:
        run = by_overrides[tuple(ret.overrides)]
        assert ret.return_value == run.summary["metrics"]["test_loss"] and ret.hydra_cfg is None
        assert ret.cfg.model.depth == run.summary["config"]["model"]["depth"] and "hydra" not in ret.cfg
    # a second invocation trains nothing (resume by config identity) and changes no record
    before = {p: p.read_bytes() for p in sweep.glob("*/layers.parquet")}
    again = run_cli("-m", *GRID, "hydra/launcher=vectorized_submitit_local", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert "4 already finished, 0 to train" in again.stdout + again.stderr
    assert before == {p: p.read_bytes() for p in sweep.glob("*/layers.parquet")}


@pytest.mark.slow
def test_a_group_whose_job_dies_is_recorded_per_member_and_trains_on_resume(tmp_path, reference, monkeypatch):
    # Each group's process exits right after training, before writing anything (tests/faults: a lost node)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent / "faults"))
    monkeypatch.setenv("INITLAB_FAULT", "die-after-group-fit")
    started = time.monotonic()
    dead = run_cli("-m", *GRID, "hydra/launcher=vectorized_submitit_local", "hydra.sweep.dir=sweep", cwd=tmp_path,
                   check=False)
    assert dead.returncode == 1, dead.stderr[-2000:]
    sweep = load([tmp_path / "sweep"])
    assert (sweep.runs.status == "failed").all() and len(sweep.runs) == 4
    assert sweep.runs.error.str.contains("submitit job .* ended without writing this run's records", regex=True).all()
    for summary in (tmp_path / "sweep").glob("*/summary.json"):  # where it ran is not known: null, not a guess
        assert json.loads(summary.read_text())["device"] is None
    said = dead.stdout + dead.stderr
    assert said.count("ended without its group's records") == 2 and "4 failed" in said
    # a local job's result file is there when its process ends or never: no wait of submitit's 15 s grace
    assert time.monotonic() - started < 15, time.monotonic() - started
    # the same sweep again, nothing broken: the 4 members train, as the in-process launcher's
    monkeypatch.delenv("INITLAB_FAULT")
    again = run_cli("-m", *GRID, "hydra/launcher=vectorized_submitit_local", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert "0 already finished, 4 to train" in again.stdout + again.stderr
    _same_sweeps(_runs(tmp_path / "sweep"), reference)


@pytest.mark.slow
def test_a_group_past_its_time_limit_is_recorded_per_member(tmp_path):
    # A 10-second limit (submitit's local timeout; a group's process takes 2-5 s to start): submitit
    # stops the group while it trains, and does not requeue it (max_num_timeout=0 by default).
    result = run_cli("-m", *GRID, "hydra/launcher=vectorized_submitit_local", "hydra.launcher.timeout_min=0.17",
                     "hydra.launcher.signal_delay_s=1", "hydra.sweep.dir=sweep", "trainer.max_steps=null",
                     "trainer.epochs=100000", cwd=tmp_path, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    sweep = load([tmp_path / "sweep"])
    assert (sweep.runs.status == "failed").all() and len(sweep.runs) == 4
    assert sweep.runs.error.str.contains("timed-out too many times").all()  # submitit's reason, raised in the training
    logs = list((tmp_path / "sweep" / ".submitit").glob("*/*_0_log.out"))  # one per group's job
    assert len(logs) == 2 and all(log.read_text().count("Loading pickle") == 1 for log in logs)  # none requeued


def test_submitits_end_of_a_job_survives_a_signal_that_lands_inside_a_log_call():
    """submitit raises "job not requeued" from its USR2 handler, wherever the main thread is; inside a
    logging handler's emit, logging swallowed it and the group trained on until SLURM's kill (seen on
    the test cluster). carry_the_end_past_handlers makes it a BaseException that no handler swallows."""
    import io
    import logging
    import signal

    from submitit import JobEnvironment
    from submitit.core.utils import UncompletedJobError

    from initlab.sweep.cluster_job import JobEnded, carry_the_end_past_handlers

    sig = JobEnvironment._usr_sig()

    def submitits_handler(signum, frame):  # as checkpoint_and_try_requeue ends a job it does not requeue
        raise UncompletedJobError("Job not requeued because: timed-out too many times.")

    class SignalledStream(io.StringIO):
        def write(self, text):  # the signal arrives while a log line is being written
            os.kill(os.getpid(), sig)
            return super().write(text)

    logger = logging.getLogger("initlab.test.signalled")
    handler = logging.StreamHandler(SignalledStream())
    logger.addHandler(handler)
    previous = signal.signal(sig, submitits_handler)
    try:
        logger.warning("group epoch 1/10")  # the premise: plain, the error is swallowed by logging
        carry_the_end_past_handlers()
        carry_the_end_past_handlers()  # (idempotent: one wrapper)
        with pytest.raises(JobEnded) as ended:
            logger.warning("group epoch 2/10")
        assert isinstance(ended.value.__cause__, UncompletedJobError)
    finally:
        signal.signal(sig, previous)
        logger.removeHandler(handler)


def test_lost_jobs_wait_one_grace_for_their_result_files_together_not_one_after_another(tmp_path, monkeypatch):
    """A cancelled array: every task over at once, none wrote a result. submitit's results() waits
    `Job._results_timeout_s` for the file in each call; as_they_end waits it once for them all and hands
    each job on with that wait spent (0), and a job whose result is there at once without any wait."""
    from initlab.sweep import in_flight

    assert submitit.core.core.Job._results_timeout_s == 15  # the private attribute relied on (submitit 1.5)
    monkeypatch.setattr(submitit.core.core.Job, "_results_timeout_s", 0.5)
    (tmp_path / "written.pkl").write_bytes(b"")

    class Ended:
        def __init__(self, name):
            self.job_id, self.paths = name, SimpleNamespace(result_pickle=tmp_path / f"{name}.pkl")

        def done(self, force_check=False):
            return True

    jobs = [Ended(f"lost{i}") for i in range(4)] + [Ended("written")]
    start, seen = time.monotonic(), []
    for job in in_flight.as_they_end(jobs, poll_s=0.01):
        seen.append((job.job_id, time.monotonic() - start))
    assert seen[0][0] == "written" and seen[0][1] < 0.25
    assert sorted(name for name, _ in seen[1:]) == [f"lost{i}" for i in range(4)]
    assert all(0.5 <= t < 0.9 for _, t in seen[1:]), seen  # one grace for the four, not four
    assert all(job._results_timeout_s == 0 for job in jobs[:4]) and "_results_timeout_s" not in vars(jobs[4])


def test_a_lost_jobs_reason_is_one_line_naming_what_the_cluster_or_the_job_said():
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from initlab.sweep.cluster import _why

    cancelled = UncompletedJobError("Job 44_0 (task: 0) with path /s/44_0_0_result.pkl\n"
                                    "has not produced any output (state: CANCELLED by 0)\nError stream produced:\n----\nsrun: ...")
    assert _why(cancelled) == "UncompletedJobError: Job 44_0 (task: 0) with path /s/44_0_0_result.pkl (state: CANCELLED by 0)"
    trace = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    raise E\n"
             "submitit.core.utils.UncompletedJobError: Job not requeued because: timed-out too many times.\n")
    failed = FailedJobError(f"Job (task=0) failed during processing with trace:\n----------------------\n{trace}\n"
                            "----------------------\nYou can check full logs with 'job.stderr(0)'\n  - /s/0.err")
    assert _why(failed) == ("FailedJobError: Job (task=0) failed during processing with trace: "
                            "submitit.core.utils.UncompletedJobError: Job not requeued because: timed-out too many times.")
    assert _why(RuntimeError()) == "RuntimeError"
    # SLURM's warning signal before submitit's handler was installed: the task died of it at start-up
    signalled = UncompletedJobError("Job 45_0 (task: 0) with path /s/45_0_0_result.pkl\nhas not produced any output "
                                    "(state: FAILED)\nError stream produced:\n----\nsubmitit INFO (...) - Loading pickle\n"
                                    "srun: error: node1: task 0: User defined signal 2\n")
    assert _why(signalled) == ("UncompletedJobError: Job 45_0 (task: 0) with path /s/45_0_0_result.pkl (state: FAILED), "
                               "srun: task 0: User defined signal 2")


def test_a_resume_knows_which_jobs_an_earlier_submissions_queued_tasks_train(tmp_path, monkeypatch, caplog):
    """in_flight.py against a stand-in squeue (tests/test_slurm.py runs it on a real cluster)."""
    from initlab.sweep.in_flight import MANIFEST, still_on_the_cluster

    folder = tmp_path / ".submitit"
    for job_id, members in (("7_0", ["a", "b"]), ("7_1", ["c"]), ("5_0", ["d"])):
        (folder / job_id).mkdir(parents=True)
        (folder / job_id / MANIFEST).write_text(json.dumps({"job_id": job_id, "members": members}))
    squeue = tmp_path / "bin" / "squeue"
    squeue.parent.mkdir()
    monkeypatch.setenv("PATH", f"{squeue.parent}:{os.environ['PATH']}")
    squeue.write_text("#!/bin/sh\nprintf '7_0\\n7_1\\n9_3\\n'\n")  # 5_0 has ended; 9_3 is another sweep's
    squeue.chmod(0o755)
    assert still_on_the_cluster(f"{folder}/%j") == {"a": "7_0", "b": "7_0", "c": "7_1"}
    squeue.write_text("#!/bin/sh\necho 'Unable to contact slurm controller' >&2\nexit 1\n")
    assert still_on_the_cluster(f"{folder}/%j") == {}  # not known: trained again, and said so
    assert "squeue failed" in caplog.text
    assert still_on_the_cluster(f"{tmp_path}/elsewhere/%j") == {}  # no manifest: squeue is not asked


@pytest.mark.slow  # processes of their own, one per core share
def test_a_groups_job_trains_on_the_cores_it_was_granted(monkeypatch):
    from initlab.cores import usable_cores

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert usable_cores() == cores
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")  # a SLURM task's share, on a node that does not bind CPUs
    assert usable_cores() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(cores + 8))  # never more than this process may use
    assert usable_cores() == cores
    # the local executor's parallel groups: each process pinned to its own share (in a child: pinning is for good)
    probe = ("import os, torch; from types import SimpleNamespace as N; from initlab.sweep.cluster_job import take_share_of_cores; "
             "take_share_of_cores(N(_EXECUTOR='local', parallel_groups=2), {slot}); "
             "print(sorted(os.sched_getaffinity(0)), torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")}
    seen = [subprocess.run([sys.executable, "-c", probe.format(slot=slot)], env=env, capture_output=True, text=True,
                           check=True).stdout.strip() for slot in (0, 1)]
    allowed = sorted(os.sched_getaffinity(0))
    share = max(1, len(allowed) // 2)
    assert seen == [f"{allowed[:share]} {share}", f"{allowed[share:2 * share]} {share}"]


def test_several_devices_train_groups_at_once_with_the_same_records(tmp_path, reference):
    # Two workers on two devices (two CPU "devices" here; on a GPU machine every visible GPU by default)
    result = run_cli("-m", *GRID, "hydra/launcher=vectorized", "hydra.launcher.devices=[cpu,cpu]",
                     "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert "Vectorized: 2 workers, on cpu, cpu" in result.stdout + result.stderr
    _same_sweeps(_runs(tmp_path / "sweep"), reference)


def test_vectorized_slurm_without_slurm_here_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch (the CLI runs as sys.executable -m initlab)
    result = run_cli("-m", *GRID, "hydra/launcher=vectorized_slurm", "hydra.sweep.dir=sweep", cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "initlab: hydra/launcher=vectorized_slurm needs SLURM's sbatch on this machine (not found on PATH: sbatch); "
        "submit from a login node, or run the groups here with hydra/launcher=vectorized_submitit_local. "
        "Nothing was submitted.")


def test_the_cluster_launchers_register_their_config():
    from hydra.core.config_store import ConfigStore

    import hydra_plugins.initlab_vectorized.config  # noqa: F401  (Hydra imports it at start-up)

    launchers = ConfigStore.instance().repo["hydra"]["launcher"]
    assert {"vectorized.yaml", "vectorized_slurm.yaml", "vectorized_submitit_local.yaml"} <= set(launchers)
    slurm = launchers["vectorized_slurm.yaml"].node
    assert slurm.max_group_size == 256 and slurm.gpus_per_node == 1 and slurm.array_parallelism == 64
    assert json.dumps(slurm.partition) == "null"  # the cluster's partition is the user's to name


def test_the_slurm_form_writes_one_job_array_of_groups_with_its_resources(tmp_path, monkeypatch):
    """No cluster needed: submitit's SLURM executor is built (stand-in `srun`, `sbatch` on PATH) from the composed
    hydra/launcher=vectorized_slurm config, and the sbatch script it would submit is read back."""
    from hydra import compose, initialize_config_dir
    from submitit.slurm.slurm import _make_sbatch_string

    from conftest import CONF
    from hydra_plugins.initlab_vectorized.vectorized_launcher import VectorizedSlurmLauncher
    from initlab.sweep.cluster import executor_for

    for command in ("srun", "sbatch"):  # stand-ins: submitit and the launcher look for SLURM's commands
        (tmp_path / command).write_text("#!/bin/sh\nexit 0\n")
        (tmp_path / command).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["hydra/launcher=vectorized_slurm", "hydra.launcher.partition=gpu",
                                 "hydra.launcher.array_parallelism=16", f"hydra.sweep.dir={tmp_path}/sweep"])
    params = {k: cfg.hydra.launcher[k] for k in cfg.hydra.launcher if k not in ("_target_", "name")}
    launcher = VectorizedSlurmLauncher(**params, name="initlab")
    assert launcher.max_group_size == 256 and "max_group_size" not in launcher.params  # the plan's, not sbatch's
    script = _make_sbatch_string(command="python -m submitit.core._submit", folder=launcher.params["submitit_folder"],
                                 map_count=40, **executor_for(launcher)._executor.parameters)
    for line in ("--array=0-39%16", "--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=64GB",
                 "--time=60", f"--output={tmp_path}/sweep/.submitit/%A_%a/%A_%a_0_log.out"):
        assert f"#SBATCH {line}" in script, line
