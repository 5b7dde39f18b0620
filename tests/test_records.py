"""records' file writes (whole_files): whole or not at all, whatever happens to the process writing them."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from initlab.store import records

from initlab.store import whole_files
@pytest.fixture(params=["nameless", "named temporary"])
def how(request, monkeypatch):
    """Each test runs with nameless files (O_TMPFILE, where this machine has them) and with the
    named-temporary fallback of file systems without them."""
    if request.param == "nameless" and not whole_files._NAMELESS_FILES:
        pytest.skip("no O_TMPFILE or /proc here")
    monkeypatch.setattr(whole_files, "_NAMELESS_FILES", request.param == "nameless")
    return request.param


def test_written_files_read_back_and_have_an_ordinary_files_mode(tmp_path, how):
    table = pd.DataFrame({"step": [0, 1], "value": [0.5, float("nan")]})
    records.write_table(tmp_path / records.LAYERS, table)
    records.write_json(tmp_path / records.SUMMARY, {"status": "completed", "accuracy": 0.97})
    records.write_text(tmp_path / records.ERROR, "Traceback …\n")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / records.LAYERS), table)
    assert json.loads((tmp_path / records.SUMMARY).read_text()) == {"status": "completed", "accuracy": 0.97}
    assert (tmp_path / records.ERROR).read_text(encoding="utf-8") == "Traceback …\n"
    (tmp_path / "plain").write_text("x")  # what open() makes under this umask
    for name in (records.LAYERS, records.SUMMARY, records.ERROR):
        assert (tmp_path / name).stat().st_mode == (tmp_path / "plain").stat().st_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([records.LAYERS, records.SUMMARY, records.ERROR, "plain"])


def test_a_file_written_again_is_replaced_whole(tmp_path, how):
    records.write_json(tmp_path / records.SUMMARY, {"status": "failed"})
    records.write_json(tmp_path / records.SUMMARY, {"status": "completed"})
    assert json.loads((tmp_path / records.SUMMARY).read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == [records.SUMMARY]


def test_a_write_that_fails_leaves_the_old_file_or_nothing(tmp_path, how):
    def half_then_full(f):
        f.write(b'{"status": "compl')
        raise OSError(28, "No space left on device")

    (tmp_path / records.ERROR).write_text("the earlier attempt's\n")
    for name in (records.SUMMARY, records.ERROR):
        with pytest.raises(OSError, match="No space"):
            records._atomic(tmp_path / name, half_then_full)
    assert [p.name for p in tmp_path.iterdir()] == [records.ERROR]
    assert (tmp_path / records.ERROR).read_text() == "the earlier attempt's\n"


KILLED_MID_WRITE = """
import os, sys
from pathlib import Path
from initlab.store import records
from initlab.store import whole_files
whole_files._NAMELESS_FILES = sys.argv[2] == "nameless"

def half_then_killed(f):
    f.write(b"PAR1" + bytes(100_000))
    f.flush()
    os.kill(os.getpid(), 9)

records._atomic(Path(sys.argv[1]), half_then_killed)
"""


def test_a_process_killed_mid_write_leaves_the_old_file_or_nothing_and_clear_run_the_rest(tmp_path, how):
    run = tmp_path / "run"
    run.mkdir()
    (run / records.CURVES).write_bytes(b"the earlier attempt's")
    for name in (records.LAYERS, records.CURVES):
        killed = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(run / name), how])
        assert killed.returncode == -9
    assert (run / records.CURVES).read_bytes() == b"the earlier attempt's"
    left = sorted(p.name for p in run.iterdir())
    if how == "nameless":  # the half-written files vanished with the process
        assert left == [records.CURVES]
    else:  # two named temporaries stay until the job's next attempt clears the folder
        assert len(left) == 3 and all(n.startswith((f".{records.LAYERS}.tmp", f".{records.CURVES}.tmp"))
                                      for n in left if n != records.CURVES)
    (run / records.SUMMARY).write_text("{}")
    (run / "keep.txt").write_text("a user's file")
    records.clear_run(run)
    assert sorted(p.name for p in run.iterdir()) == ["keep.txt"]


@pytest.mark.skipif(not whole_files._NAMELESS_FILES, reason="no O_TMPFILE or /proc here")
def test_where_a_nameless_file_cannot_be_named_it_is_written_by_name_and_a_full_disk_still_fails(tmp_path, monkeypatch):
    def refused(*args, **kwargs):
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(whole_files.os, "link", refused)  # a file system that refuses linkat (some network ones)
    records.write_json(tmp_path / records.SUMMARY, {"status": "completed"})
    assert json.loads((tmp_path / records.SUMMARY).read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == [records.SUMMARY]

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(whole_files.os, "link", full)
    with pytest.raises(OSError, match="No space"):
        records.write_json(tmp_path / records.CURVES, {})
    assert [p.name for p in tmp_path.iterdir()] == [records.SUMMARY]
