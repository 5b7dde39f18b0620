"""Job folders written by worker processes (initlab.member_writes) are the ones the launcher writes
itself: the same files, the same bytes but for when and where they were written, the same console
output in the same order, and the same JobReturns."""

import json
import re
import pickle

import pytest

from initlab import member_writes
from initlab.member_writes import MemberWriters, _travels

from test_sweeps import run_cli
from test_vectorized import SMALL

# 16 members (member_writes.MIN_MEMBERS): one stacked group
GRID = ("init=xavier_uniform,kaiming_normal,orthogonal,lecun_normal", "lr.value=0.1,0.01", "trainer.seed=0,1",
        "trainer.max_steps=4")
WHEN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}")


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
    return WHEN.sub("<when>", text)


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
    lines = [WHEN.sub("<when>", line) for line in pooled.stdout.replace(str(there), "<cwd>").splitlines()
             if "written by" not in line]
    assert lines == [WHEN.sub("<when>", line) for line in alone.stdout.replace(str(here), "<cwd>").splitlines()]


def test_what_cannot_travel_is_written_here_or_said_in_words(tmp_path):
    class Local(Exception):  # a class pickle cannot find by name
        pass

    assert isinstance(_travels(ValueError("x")), ValueError)
    words = _travels(Local("no pickle"))
    assert isinstance(words, RuntimeError) and "Local: no pickle" in str(words)
    with pytest.raises(Exception):
        pickle.dumps(Local("x"))

    # a chunk that does not pickle never reaches the pool: the launcher writes it itself
    writers = MemberWriters(1)
    writers.broken = False
    written_here = []
    writers.start = lambda: None

    class Started:
        def join(self):
            pass

    writers.starting = Started()

    class Job:
        num = 0

        def __reduce__(self):
            raise TypeError("not picklable")

    job = Job()
    member_writes.JobRuntime.instance().set("name", "train_job")
    returns = {}
    writers.write([(job, None)], returns, job_return=lambda j: None, write_here=written_here.extend)
    assert written_here == [(job, None)] and returns == {}
