"""Groups that an earlier submission of a sweep left on a SLURM cluster, found and waited for.

The submitting process of `hydra/launcher=vectorized_slurm` may die while its job array is still
queued or running (a lost login node, a closed terminal, Ctrl-C, SIGKILL): SLURM goes on training
the groups and writing their members' folders. Resumed at once with the same command, the sweep
would count those members as unfinished and submit them again, training every one of them twice.
So each submitted task leaves a manifest beside its submitit files, naming its members' folders.
A resumed sweep asks squeue which of those tasks are still queued or running, leaves their members
out of its plan, and waits for those tasks: it records what they wrote, and any member such a task
ends without writing as failed, naming the task (the next resume trains it).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import subprocess
import time
from pathlib import Path

log = logging.getLogger("initlab")

MANIFEST = "initlab_members.json"

# How often a wait asks the cluster (sacct) about a task that has not written its result. submitit's
# own watcher asks ever less often as its jobs age, at last once per 10 minutes: a task lost without
# a result (cancelled, killed, its node gone) late in a long study would be noticed that late.
ASK_THE_CLUSTER_EVERY_S = 30.0


def record_members(job, group: list) -> None:
    """Beside a submitted task's submitit files: the folders of the members it trains."""
    folder = Path(job.paths.folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps({"job_id": job.job_id, "members": [m.folder.name for m in group]}))


def still_on_the_cluster(submitit_folder: str) -> dict[str, str]:
    """Member folder name -> id of the task of an earlier submission that is still queued or running
    and will write it (squeue's view; a task squeue no longer lists has ended)."""
    manifests = glob.glob(os.path.join(submitit_folder.replace("%j", "*"), MANIFEST))
    if not manifests:
        return {}
    try:
        listed = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=60,
                                check=True).stdout.split()
    except (OSError, subprocess.SubprocessError) as e:
        log.warning(f"squeue failed ({e}): cannot tell whether an earlier submission's groups are still on the "
                    f"cluster; their unfinished members are submitted again")
        return {}
    alive, members = set(listed), {}
    for manifest in manifests:
        try:
            task = json.loads(Path(manifest).read_text())
        except (OSError, ValueError):
            continue
        if task["job_id"] in alive:
            members.update({name: task["job_id"] for name in task["members"]})
    return members


def until_done(job, poll_s: float = 1.0, ask_every_s: float = ASK_THE_CLUSTER_EVERY_S) -> None:
    """Wait for a submitit job to end: its result file looked for every `poll_s` (submitit's done()
    looks there first), the cluster asked at least every `ask_every_s` (done(force_check=True) is one
    sacct call for every job of the process: a local job ignores it)."""
    asked = time.monotonic()
    while True:
        force = time.monotonic() - asked >= ask_every_s
        if force:
            asked = time.monotonic()
        if job.done(force_check=force):
            return
        time.sleep(poll_s)


def as_they_end(jobs: list, poll_s: float = 1.0, ask_every_s: float = ASK_THE_CLUSTER_EVERY_S):
    """Each of `jobs` as it ends, in the order they end: when its result file is there, or once it has
    been over for submitit's grace without one (a job cancelled, killed, timed out, its node lost).

    submitit's results() and exception() wait that grace themselves (`Job._results_timeout_s`, 15 s,
    for a result file a slow shared filesystem has not shown yet), in each call: waited job after
    job, a cancelled array of 50 groups would keep the sweep 12 minutes before it records them. Here
    the jobs' graces run side by side and a job yielded without a result file has had its grace, so
    its own wait is set to 0 (the attribute submitit's own tests set; tests/test_cluster.py checks it
    is still there). A local job's process wrote on this machine's view of the disk: once it has
    ended, its file is there or never will be, so no grace."""
    from submitit.core.core import Job
    from submitit.local.local import LocalJob

    shared = getattr(Job, "_results_timeout_s", 15)
    pending, over_since = list(jobs), {}
    asked = time.monotonic()
    while pending:
        force = time.monotonic() - asked >= ask_every_s
        if force:
            asked = time.monotonic()
        for job in list(pending):
            if not job.done(force_check=force):
                continue
            force = False  # (one sacct call answered for every job of the process)
            written = Path(job.paths.result_pickle).exists()
            since = over_since.setdefault(id(job), time.monotonic())
            if written or isinstance(job, LocalJob) or time.monotonic() - since >= shared:
                if not written:
                    job._results_timeout_s = 0
                pending.remove(job)
                yield job
        if pending:
            time.sleep(poll_s)


def wait_for_them(sweep, waiting: dict[str, list], submitit_folder: str, returns: dict, record_lost) -> None:
    """Wait for each earlier task (job id -> the members it trains); record what it wrote, and each member
    it ended without writing as failed (`record_lost(sweep, members, job, error, returns)`)."""
    import submitit

    tasks = [submitit.SlurmJob(folder=submitit_folder, job_id=job_id) for job_id in waiting]
    for job in as_they_end(tasks):
        members = waiting[job.job_id]
        try:
            error = job.exception()
        except Exception as e:  # its state unreadable: the members it did not write are still lost
            error = e
        record_lost(sweep, members, job, error or RuntimeError("the task ended without writing them"), returns)
