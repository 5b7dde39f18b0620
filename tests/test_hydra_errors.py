"""Hydra's composition errors (a wrong option, a key that is not there, several values without -m,
an override Hydra cannot parse) end as one line naming the value and what is allowed, exit code 2,
before anything runs (initlab/config/hydra_errors.py); HYDRA_FULL_ERROR=1 still gives Hydra's own report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CONF = Path(__file__).resolve().parent.parent / "conf"


def _cli(*args, cwd, **env):
    return subprocess.run([sys.executable, "-m", "initlab", *args], cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, capture_output=True, text=True)


def _one_line(result) -> str:
    """The error line, once the command stopped with exit code 2 and wrote nothing else."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("initlab: ")
    return lines[0][len("initlab: "):]


def _nothing_ran(folder: Path) -> None:
    assert not list(folder.rglob("summary.json")) and not list(folder.rglob("*.parquet"))


def test_a_wrong_option_names_the_options_and_the_closest(tmp_path):
    line = _one_line(_cli("init=kaiming", cwd=tmp_path))
    options = sorted(p.stem for p in (CONF / "init").glob("*.yaml"))  # what conf/ holds
    assert line.startswith(f"init=kaiming: no such option (did you mean kaiming_normal or kaiming_uniform?); "
                           f"the options: {', '.join(options)} ")
    assert f"searched file://{CONF}" in line
    # One option of a list missing: Hydra lists no options there; the line still does.
    listed = _one_line(_cli("init=[kaiming_normal,xavier_normall]", cwd=tmp_path))
    assert listed.startswith("init=xavier_normall: no such option (did you mean xavier_normal ")
    assert f"; the options: {', '.join(options)} " in listed
    _nothing_ran(tmp_path)


def test_a_users_config_dir_option_is_among_the_options(tmp_path):
    mine = tmp_path / "myconf"
    (mine / "init").mkdir(parents=True)
    (mine / "init" / "mine.yaml").write_text("_target_: torch.nn.init.orthogonal_\ngain: 1.0\n")
    line = _one_line(_cli("--config-dir", str(mine), "init=mien", cwd=tmp_path))
    assert line.startswith("init=mien: no such option (did you mean mine?)")
    assert ", mine, " in line and f"file://{mine}" in line


def test_a_key_that_is_not_there_names_the_nodes_keys(tmp_path):
    line = _one_line(_cli("trainer.epochz=3", cwd=tmp_path))
    keys = list(yaml.safe_load((CONF / "trainer" / "default.yaml").read_text()))
    assert line == (f"trainer.epochz=3: trainer has no key 'epochz' (did you mean epochs?); its keys: "
                    f"{', '.join(keys)}; +trainer.epochz=3 adds it")
    top = _one_line(_cli("initt=xavier_normal", cwd=tmp_path))
    assert top.startswith("initt=xavier_normal: the config has no key 'initt' (did you mean init?); its keys: init, ")
    assert "hydra" not in top.split("its keys: ")[1]


@pytest.mark.parametrize("args, expected", [
    (["lr.value=0.1,0.01"], "lr.value=0.1,0.01: several values make a sweep, which needs -m (--multirun); "
                            "a list is lr.value=[0.1,0.01], a string lr.value='\"0.1,0.01\"'"),
    (["lr.value=["], "lr.value=[: Hydra cannot parse this override (no viable alternative at input '[')"),
    (["~trainer.epochz"], "~trainer.epochz: there is no trainer.epochz to delete"),
    (["-m", "hydra/launcher=vectorized", "hydra.launcher.max_group_size=many", "init=xavier_normal,kaiming_normal"],
     "hydra.launcher.max_group_size=many: Value 'many' of type 'str' could not be converted to Integer"),
    (["-m", "hydra/launcher=vectorizd", "init=xavier_normal,kaiming_normal"],
     "hydra/launcher=vectorizd: no such option (did you mean vectorized or vectorized_slurm?)"),
    (["-m", "hydra/launcher=vectorized", "init=xavier_normal,kaiming", "trainer.max_steps=1"],
     "init=kaiming: no such option (did you mean kaiming_normal or kaiming_uniform?)"),
    (["-m", "--cfg", "job", "init=xavier_normal,kaiming_normal"],
     "Only one of --run, --multirun, --cfg, --info and --shell_completion can be specified (--cfg and --info"),
])
def test_other_composition_errors_are_one_line_too(tmp_path, args, expected):
    assert _one_line(_cli(*args, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)).startswith(expected)
    _nothing_ran(tmp_path)


def test_hydra_full_error_keeps_hydras_own_report(tmp_path):
    result = _cli("init=kaiming", cwd=tmp_path, HYDRA_FULL_ERROR="1")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "MissingConfigException" in result.stderr
    assert "Available options in 'init'" in result.stderr


def test_a_bad_value_of_the_report_callback_is_one_line(tmp_path):
    line = _one_line(_cli("-m", "hydra/callbacks=report", "hydra.callbacks.sweep_end.report_process_from=abc",
                          "data=synthetic", "trainer.max_steps=2", "hydra.sweep.dir=sweep", cwd=tmp_path))
    assert line == "hydra.callbacks.sweep_end.report_process_from='abc': allowed: a whole number of runs, 1 or more"
    _nothing_ran(tmp_path)

