"""A researcher's own study, as the README tells it: their init function and their YAMLs
(docs/examples/my_init, copied to a folder outside the checkout), `initlab --config-dir`, a sweep
mixing their options with initlab's, a report."""

import json
import math
import os
import subprocess
import sys
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from initlab.report.tables import load

from test_cli import SMALL

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "my_init"


def _command(name: str = "initlab") -> list[str]:
    """The console script a user types, from the same environment as the tests."""
    script = Path(sys.executable).with_name(name)
    if script.exists():
        return [str(script)]
    main = "main" if name == "initlab" else "report_main"
    return [sys.executable, "-c", f"import sys; from initlab.cli import {main}; sys.exit({main}())"]


def _run(*args, cwd, pythonpath=True, check=True):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = "."
    result = subprocess.run([*_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture
def study(tmp_path):
    """A folder of the user's own, nowhere near the checkout: a module and a conf/ beside it."""
    shutil.copytree(EXAMPLE, tmp_path / "study", ignore=shutil.ignore_patterns("outputs", "__pycache__"))
    return tmp_path / "study"


@pytest.mark.slow  # a sweep through the CLI
def test_own_init_beside_initlabs_in_one_sweep_and_report(study):
    _run("--config-dir", "conf", "-m", *SMALL, "trainer.max_steps=8", "init=mine,kaiming_normal,torch_orthogonal",
         "hydra.sweep.dir=sweep", cwd=study)
    sweep = load([study / "sweep"])
    assert sorted(sweep.runs["init"]) == ["kaiming_normal", "mine", "torch_orthogonal"]
    assert (sweep.runs.status == "completed").all()
    mine = sweep.runs[sweep.runs["init"] == "mine"].iloc[0]
    summary = json.loads((Path(mine.path) / "summary.json").read_text())
    assert summary["config"]["init"] == {"_target_": "myinit.scaled_normal_", "scale": 1.2}
    # The weights it trained from are the user's: layer 0's norm at step 0 is 1.2 * sqrt(out) for
    # N(0, 1.2^2 / fan_in) draws (weight_norm is ||W|| before the first update).
    layers = pd.read_parquet(Path(mine.path) / "layers.parquet")
    norm0 = layers.query("metric == 'weight_norm' and step == 0 and layer == 0").value.item()
    assert norm0 == pytest.approx(1.2 * math.sqrt(32), rel=0.05)
    # And the report compares them.
    result = subprocess.run([*_command("initlab-report"), "sweep"], cwd=study, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    page = (study / "sweep" / "report" / "report.md").read_text()
    assert "mine" in page and "torch_orthogonal" in page and "kaiming_normal" in page


def test_own_init_draws_what_the_function_draws(study):
    _run("--config-dir", "conf", *SMALL, "trainer.max_steps=1", "init=mine", "trainer.seed=3",
         "hydra.run.dir=one", cwd=study)
    layers = pd.read_parquet(study / "one" / "layers.parquet")
    sys.path.insert(0, str(study))
    try:
        import myinit
        torch.manual_seed(3)
        from initlab.build.model import MLP
        model = MLP(784, 10, depth=2, width=32)
        with torch.no_grad():
            for layer in model.linears:
                myinit.scaled_normal_(layer.weight, scale=1.2)
    finally:
        sys.path.remove(str(study))
        sys.modules.pop("myinit", None)
    recorded = layers.query("metric == 'weight_norm' and step == 0").sort_values("layer").value.tolist()
    assert recorded == pytest.approx([l.weight.norm().item() for l in model.linears], rel=1e-6)


@pytest.mark.slow  # a whole study through the CLI from a folder outside the checkout
def test_own_experiment_and_search_path(study):
    _run("--config-dir", "conf", "experiment=mine_vs_classics", *SMALL, "trainer.max_steps=4",
         "hydra.sweep.dir=exp", cwd=study)
    assert len(list((study / "exp").glob("*/summary.json"))) == 15
    assert (study / "exp" / "report" / "report.md").exists()
    # hydra.searchpath is the other standard way in.
    _run(f"hydra.searchpath=[file://{study / 'conf'}]", *SMALL, "trainer.max_steps=2", "init=mine",
         "hydra.run.dir=searchpath", cwd=study)
    assert json.loads((study / "searchpath" / "summary.json").read_text())["choices"]["init"] == "mine"


@pytest.mark.slow  # a vectorized sweep through the CLI
def test_own_init_in_the_vectorized_launcher(study):
    _run("--config-dir", "conf", "-m", "hydra/launcher=vectorized", *SMALL, "trainer.max_steps=6",
         "init=mine,kaiming_normal", "trainer.seed=0,1", "hydra.sweep.dir=vec", cwd=study)
    _run("--config-dir", "conf", "-m", *SMALL, "trainer.max_steps=6", "init=mine", "trainer.seed=1",
         "hydra.sweep.dir=basic", cwd=study)
    def folder(sweep):
        return next(p.parent for p in (study / sweep).glob("*/summary.json")
                    if json.loads(p.read_text())["choices"]["init"] == "mine"
                    and json.loads(p.read_text())["config"]["trainer"]["seed"] == 1)
    stacked = pd.read_parquet(folder("vec") / "layers.parquet")
    alone = pd.read_parquet(folder("basic") / "layers.parquet")
    w0 = lambda t: t.query("metric == 'weight_norm' and step == 0").sort_values("layer").value.tolist()
    assert w0(stacked) == pytest.approx(w0(alone), rel=1e-6)  # the same initial weights, member or alone


def test_a_module_that_does_not_import_is_one_line(study):
    result = _run("--config-dir", "conf", *SMALL, "init=mine", cwd=study, pythonpath=False, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "initlab: init._target_='myinit.scaled_normal_': no module 'myinit' can be imported (is its folder on PYTHONPATH?); "
        "must name an importable function that takes the weight matrix as its first argument (initlab.init.*, "
        "torch.nn.init.*, or one of yours on PYTHONPATH)"]


@pytest.mark.slow  # a CLI process; tests/test_config.py checks the same message in-process
def test_a_wrong_key_for_the_users_function_is_one_line(study):
    result = _run("--config-dir", "conf", *SMALL, "init=mine", "+init.sclae=2", cwd=study, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "initlab: init.sclae: not a setting of myinit.scaled_normal_ (allowed: scale)"
    result = _run("--config-dir", "conf", *SMALL, "init=mine", "init.scale=big", cwd=study, check=False)
    assert result.stderr.strip() == "initlab: init.scale='big': must be a number > 0"
    # Its Annotated rule is checked like initlab's own.
    result = _run("--config-dir", "conf", *SMALL, "init=mine", "init.scale=0", cwd=study, check=False)
    assert result.stderr.strip() == "initlab: init.scale=0: must be a number > 0"
