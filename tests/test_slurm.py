"""`hydra/launcher=vectorized_slurm` against a real SLURM cluster: slurmctld, slurmd and slurmdbd
(`bash .ci/slurm-cluster` starts a one-node one as root; CI does). Each stacked group is one task of
a SLURM job array; submitit reads how a task ended from sacct, as on any cluster.

Without a cluster these tests skip, saying so; tests/test_cluster.py covers the same launcher's
code through submitit's local executor and the sbatch script it writes."""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from initlab.report.tables import load

from test_cluster import GRID, _runs, _same_sweeps, in_process_sweep, reference  # noqa: F401  (reference: a fixture)
from test_sweeps import initlab_cmd, run_cli


def _cluster_up() -> bool:
    if not (shutil.which("sinfo") and shutil.which("sacct")):
        return False
    try:
        checks = [subprocess.run(cmd, capture_output=True, text=True, timeout=20)
                  for cmd in (["sinfo", "-h", "-o", "%t"], ["sacct", "-n", "-X", "-S", "now"])]
    except (OSError, subprocess.TimeoutExpired):
        return False
    return all(c.returncode == 0 for c in checks) and any(
        s in checks[0].stdout for s in ("idle", "mix", "alloc"))


pytestmark = pytest.mark.skipif(not _cluster_up(), reason="no SLURM cluster here "
                                "(as root, `bash .ci/slurm-cluster` starts a one-node one)")

# The one node has no GPU and 2 CPUs: the resources a CPU partition grants (the defaults ask for a GPU node)
SLURM = ("hydra/launcher=vectorized_slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=2", "hydra.sweep.dir=sweep")
# Groups that train for several seconds (~5 s here, a line logged per epoch), so that a signal reaches one
# while it trains and a resume finds both still running (5000 epochs, until 2026-12-06: 25 s a group)
LONGER = (*GRID, "trainer.max_steps=null", "trainer.epochs=1500", "trainer.log_every=500")


def _sacct(array_id: str) -> list[tuple[str, str]]:
    """(task, state) of every attempt of a job array's tasks, requeued attempts included (-D)."""
    out = subprocess.run(["sacct", "-n", "-X", "-D", "-P", "-o", "JobID,State", "-j", array_id],
                         capture_output=True, text=True, check=True).stdout
    return [tuple(line.split("|")[:2]) for line in out.splitlines() if line.strip()]


def _array_id(sweep) -> str:
    ids = {p.name.split("_")[0] for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)}
    assert len(ids) == 1, ids  # every group is a task of one job array
    return ids.pop()


def _wait_for(condition, what, seconds: float = 120):
    """condition() until true; `what` (or what it returns, if callable) says what failed to come."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"waited {seconds} s for {what() if callable(what) else what}")


def _start(tmp_path, *args):
    """The CLI in the background; Ctrl-C reaches it (a background job of a shell may start with SIGINT ignored)."""
    return subprocess.Popen(initlab_cmd("-m", *args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _training(sweep):
    """The first group's task, once its log says it has finished an epoch: (array id, task id)."""
    def first_epoch():
        logs = list((sweep / ".submitit").glob("*_0/*_0_0_log.out")) if (sweep / ".submitit").exists() else []
        return logs and "group epoch 1/" in logs[0].read_text()
    _wait_for(first_epoch, "the first group to train an epoch")
    array = _array_id(sweep)
    return array, f"{array}_0"


@pytest.fixture(scope="module")
def longer_reference(tmp_path_factory):
    """The in-process vectorized launcher's sweep of LONGER."""
    return in_process_sweep(tmp_path_factory.mktemp("longer"), LONGER)


@pytest.mark.slow  # a SLURM job array and an in-process sweep to compare it with
def test_groups_run_as_one_job_array_and_write_what_the_in_process_launcher_writes(tmp_path, reference):
    result = run_cli("-m", *GRID, *SLURM, cwd=tmp_path)
    said = result.stdout + result.stderr
    assert "Vectorized on submitit (slurm): 4 jobs, 0 already finished, 4 to train in 2 stacked group(s)" in said
    sweep = tmp_path / "sweep"
    _same_sweeps(_runs(sweep), reference)
    array = _array_id(sweep)
    done = [(f"{array}_0", "COMPLETED"), (f"{array}_1", "COMPLETED")]  # (slurmdbd hears of it within seconds)
    _wait_for(lambda: sorted(_sacct(array)) == done, lambda: f"sacct to say {done}; it says {_sacct(array)}", 30)
    # the same command again submits nothing (resume by config identity) and changes no record
    before = {p: p.read_bytes() for p in sweep.glob("*/layers.parquet")}
    again = run_cli("-m", *GRID, *SLURM, cwd=tmp_path)
    assert "4 already finished, 0 to train" in again.stdout + again.stderr and "submitted" not in again.stderr
    assert before == {p: p.read_bytes() for p in sweep.glob("*/layers.parquet")}


def test_a_request_the_cluster_refuses_stops_with_one_line_naming_it(tmp_path):
    result = run_cli("-m", *GRID, *SLURM, "hydra.launcher.partition=gpu", cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("initlab: the cluster refused the groups' job array (sbatch: error: ")
    assert "Invalid partition name specified" in line and "asked for partition=gpu, cpus_per_task=1" in line
    assert "Traceback" not in result.stderr and not list((tmp_path / "sweep").glob("*/summary.json"))


@pytest.mark.slow
def test_a_preempted_group_is_requeued_and_its_members_train_to_the_same_records(tmp_path, longer_reference):
    sweep = tmp_path / "sweep"
    proc = _start(tmp_path, *LONGER, *SLURM)
    array, task = _training(sweep)
    # what SLURM sends a preempted job, as submitit's own SlurmJob._interrupt does: SIGTERM, then USR2
    for sig in ("SIGTERM", "USR2"):
        subprocess.run(["scancel", task, "--signal", sig], check=True)
    # submitit's checkpoint requeues the task; SLURM starts it again once its old credential expires
    # (cred_expire: 10 s on the test cluster, 120 s by default)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    log = next((sweep / ".submitit").glob(f"{task}/*_log.out")).read_text()
    assert "this job is preempted" in log and f"Requeued job {task}" in log
    assert log.count("- Job completed successfully") == 1  # (submitit's own log line; Hydra's repeats it)
    _wait_for(lambda: [state for t, state in _sacct(array) if t == task] == ["REQUEUED", "COMPLETED"],
              lambda: f"sacct to list the task's two attempts; it says {_sacct(array)}", 30)
    assert "4 completed, 0 diverged, 0 failed" in out
    _same_sweeps(_runs(sweep), longer_reference)


@pytest.mark.slow
def test_a_cancelled_group_is_recorded_per_member_and_trains_on_resume(tmp_path, longer_reference):
    sweep = tmp_path / "sweep"
    proc = _start(tmp_path, *LONGER, *SLURM)
    array, task = _training(sweep)
    subprocess.run(["scancel", task], check=True)  # as an administrator, or an out-of-memory kill, would end it
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-3000:]
    assert f"submitit job {task} ended without its group's records" in out and "CANCELLED" in out
    assert "2 completed, 0 diverged, 2 failed" in out
    runs = load([sweep]).runs
    failed = runs[runs.status == "failed"]
    assert len(failed) == 2 and failed.error.str.contains(f"submitit job {task} ended without writing").all()
    # the same command again trains only the two lost members, to the in-process launcher's records
    again = run_cli("-m", *LONGER, *SLURM, cwd=tmp_path)
    assert "2 already finished, 2 to train in 1 stacked group(s)" in again.stdout + again.stderr
    _same_sweeps(_runs(sweep), longer_reference)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_a_resume_while_the_lost_submissions_groups_still_run_waits_for_them_instead_of_training_twice(
        tmp_path, longer_reference, how):
    sweep = tmp_path / "sweep"
    lost = _start(tmp_path, *LONGER, *SLURM)
    array, _ = _training(sweep)
    lost.send_signal(getattr(signal, how))  # a lost login node, or Ctrl-C; the job array goes on
    out, _ = lost.communicate()
    if how == "SIGINT":  # one line, no traceback, saying what goes on and what to do
        assert lost.returncode == 130 and "Traceback" not in out, out[-3000:]
        assert out.strip().splitlines()[-1] == (
            f"initlab: interrupted. The groups on the cluster go on and write their members (job(s) {array}): run "
            f"the same command again to wait for them and finish the sweep, or scancel {array} to stop them.")
    queued = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True).stdout.split()
    assert f"{array}_0" in queued and f"{array}_1" in queued
    again = run_cli("-m", *LONGER, *SLURM, cwd=tmp_path)
    said = again.stdout + again.stderr
    assert "4 jobs, 0 already finished, 4 still training on the cluster, 0 to train" in said and "group(s) of 0" not in said
    assert f"4 job(s) are being trained by 2 task(s) that an earlier submission of this sweep left on the cluster " \
           f"({array}_0, {array}_1): waiting for them" in said
    assert "submitted" not in said and "4 completed, 0 diverged, 0 failed" in said
    # nothing was trained twice: the only tasks of this sweep are the lost submission's two, each run once
    ids = {p.name.split("_")[0] for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)}
    assert ids == {array} and sorted(t for t, _ in _sacct(array)) == [f"{array}_0", f"{array}_1"]
    _same_sweeps(_runs(sweep), longer_reference)


@pytest.mark.slow
def test_a_group_past_its_slurm_time_limit_ends_at_the_signal_recorded_per_member(tmp_path):
    # A two-minute limit, its signal 50 s before: submitit stops the group while it trains. SLURM may send the
    # signal up to a minute early (sbatch --signal), so not before 10 s in: with a one-minute limit it came 1 s in
    # once, before submitit's handler was there, and killed the job as it started. This takes one to two minutes.
    result = run_cli("-m", *GRID, *SLURM, "hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=50",
                     "trainer.max_steps=null", "trainer.epochs=1000000", "trainer.log_every=1000",
                     cwd=tmp_path, check=False)
    said = result.stdout + result.stderr
    assert result.returncode == 1, said[-3000:]
    runs = load([tmp_path / "sweep"]).runs
    assert (runs.status == "failed").all() and len(runs) == 4
    assert runs.error.str.contains("Job not requeued because: timed-out").all(), runs.error.tolist()  # submitit's
    assert "4 failed" in said
    # each group's job ended at the signal (its error is its result), not at SLURM's kill past the limit
    array = _array_id(tmp_path / "sweep")
    _wait_for(lambda: sorted(_sacct(array)) == [(f"{array}_0", "FAILED"), (f"{array}_1", "FAILED")],
              lambda: f"both tasks to end FAILED, not TIMEOUT; sacct says {_sacct(array)}", 30)


@pytest.mark.slow  # a SLURM job killed late in a study of its own
def test_a_task_lost_late_in_a_long_study_is_noticed_within_the_bound_not_submitits_ten_minutes(tmp_path, monkeypatch):
    """A task cancelled an hour into a study (its watcher aged by an hour): submitit's own done() would
    not ask sacct again for 10 minutes; in_flight.until_done asks within its bound."""
    import submitit

    from initlab.sweep import in_flight
    executor = submitit.SlurmExecutor(folder=tmp_path / "%j")
    executor.update_parameters(time=5, cpus_per_task=1, mem="1G", signal_delay_s=10)
    job = executor.submit(time.sleep, 600)
    _wait_for(lambda: job.done(force_check=True) is False and job.state == "RUNNING",
              lambda: f"the task to run; it is {job.state}", 60)
    watcher = submitit.SlurmJob.watcher
    monkeypatch.setattr(watcher, "_start_time", watcher._start_time - 3600)  # the last submission an hour ago
    watcher.update()
    subprocess.run(["scancel", job.job_id], check=True)
    _wait_for(lambda: not subprocess.run(["squeue", "-h", "-j", job.job_id], capture_output=True, text=True).stdout.strip(),
              f"squeue to stop listing {job.job_id}", 30)
    time.sleep(3)
    assert not job.done() and job.state == "RUNNING"  # submitit's view: the last sacct, an hour's back-off away
    start = time.monotonic()
    in_flight.until_done(job, poll_s=0.2, ask_every_s=5)
    assert time.monotonic() - start < 5 + 2 and job.state.startswith("CANCELLED")
