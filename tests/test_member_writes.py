"""Job folders written by worker processes (initlab.sweep.member_writes) are the ones the launcher writes
itself: the same files, the same bytes but for when and where they were written, the same console
output in the same order, and the same JobReturns."""

import json
import os
import pickle
import re
import subprocess
import sys

import pytest

from initlab.sweep.member_writes import _travels
from initlab.report.tables import load

from test_faults import FAULTS
from test_sweeps import run_cli
from test_vectorized import SMALL

# 16 members (member_writes.MIN_MEMBERS): one stacked group
GRID = ("init=xavier_uniform,kaiming_normal,orthogonal,lecun_normal", "lr.value=0.1,0.01", "trainer.seed=0,1",
        "trainer.max_steps=4")
WHEN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}")
TOOK = re.compile(r"\| \d+\.\ds \|")  # a run's wall time in its last log line


def sweep(tmp_path, name, workers):
    folder = tmp_path / name
    folder.mkdir()
    result = run_cli("-m", *SMALL, *GRID, "hydra/launcher=vectorized", f"hydra.launcher.write_workers={workers}",
                     "hydra.sweep.dir=sweep", cwd=folder)
    return folder, result


def comparable(folder, path):
    """A file's content, less what says when and where it was written."""
    text = path.read_bytes()
    if path.suffix == ".parquet":
        return text
    text = re.sub(r"write_workers(: |=)\d", "write_workers", text.decode().replace(str(folder), "<cwd>"))
    if path.name == "summary.json":
        summary = json.loads(text)
        for key in ("started_at", "wall_time_s", "finished_at"):
            summary.pop(key, None)
        summary.get("environment", {}).pop("pid", None)
        return summary
    return TOOK.sub("| <took> |", WHEN.sub("<when>", text))


def test_workers_write_what_the_launcher_writes(tmp_path):
    here, alone = sweep(tmp_path, "here", 0)
    there, pooled = sweep(tmp_path, "there", 2)
    assert "16 job folders written by 2 processes" in pooled.stdout
    assert "written by" not in alone.stdout
    files = sorted(p.relative_to(here) for p in (here / "sweep").rglob("*") if p.is_file())
    assert len(files) == 16 * 8 + 1 and files == sorted(p.relative_to(there) for p in (there / "sweep").rglob("*")
                                                       if p.is_file())
    for name in files:
        assert comparable(here, here / name) == comparable(there, there / name), name
    # each member's lines, in the jobs' order (the launcher prints what the workers captured)
    lines = [TOOK.sub("| <took> |", WHEN.sub("<when>", line)) for line in pooled.stdout.replace(str(there), "<cwd>").splitlines()
             if "written by" not in line]
    assert lines == [TOOK.sub("| <took> |", WHEN.sub("<when>", line)) for line in alone.stdout.replace(str(here), "<cwd>").splitlines()]


@pytest.mark.slow  # two sweeps through the CLI
def test_a_resumed_sweep_skips_in_the_workers(tmp_path):
    there, _ = sweep(tmp_path, "there", 2)
    again = run_cli("-m", *SMALL, *GRID, "hydra/launcher=vectorized", "hydra.launcher.write_workers=2",
                    "hydra.sweep.dir=sweep", cwd=there)
    assert "16 already finished, 0 to train" in again.stdout and "16 job folders written by 2 processes" in again.stdout
    assert again.stdout.count("skipped:") == 16


@pytest.mark.slow  # a sweep through the CLI with a fault injected
def test_write_processes_that_die_leave_the_folders_to_the_launcher(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "INITLAB_FAULT": "die-in-write-worker",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "initlab", "-m", *SMALL, *GRID, "hydra/launcher=vectorized",
                             "hydra.launcher.write_workers=2", "hydra.sweep.dir=sweep"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "16 job folders written (the write processes stopped: the rest written here)" in result.stdout
    assert "sweep: 16 runs: 16 completed" in result.stdout
    assert sorted(load([tmp_path / "sweep"]).runs.status) == ["completed"] * 16
    assert result.stdout.count(" steps | ") == 16  # each member's last line, once


def test_what_cannot_travel_is_said_in_words():
    class Local(Exception):  # a class pickle cannot find by name
        pass

    with pytest.raises(Exception):
        pickle.dumps(Local("x"))
    words = _travels(Local("no pickle"))
    assert isinstance(words, RuntimeError) and "Local: no pickle" in str(words)
    assert isinstance(_travels(ValueError("x")), ValueError)
