"""The `initlab` command end to end: a single run and a multirun, as a user types them."""

import json

from initlab.store import records

from conftest import run_initlab

SMALL = ["data=synthetic", "data.source.num_train=600", "data.source.num_test=100", "model.width=32"]


def initlab(*args, cwd):
    """`initlab <args>` from `cwd`, which must succeed (in this process: conftest.run_initlab)."""
    result = run_initlab(list(args), cwd)
    assert result.returncode == 0, result.stderr
    return result


def test_single_run_prints_epochs_and_writes_its_job_dir(tmp_path):
    result = initlab(*SMALL, "trainer.epochs=2", "init=orthogonal", cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert [l.split(" |")[0] for l in lines[:2]] == ["epoch 1/2", "epoch 2/2"]
    assert "grad_norm min" in lines[0] and "test_acc" in lines[0]
    assert lines[-1].startswith("completed | train_loss")
    assert "epoch 1:" not in result.stderr, "no progress bar when stderr is not a terminal"
    (summary_path,) = (tmp_path / "outputs" / "runs").rglob("summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["choices"]["init"] == "orthogonal" and summary["choices"]["data"] == "synthetic"
    assert "init=orthogonal" in summary["overrides"]
    assert (summary_path.parent / ".hydra" / "config.yaml").exists()
    assert str(summary_path.parent) in lines[-1]


def test_multirun_gives_every_job_its_own_records(tmp_path):
    initlab("-m", *SMALL, "trainer.max_steps=4", "init=xavier_uniform,kaiming_normal", "lr.value=0.1,0.01",
            "hydra.sweep.dir=sweep", cwd=tmp_path)
    runs = [records.load_run(p.parent) for p in sorted((tmp_path / "sweep").rglob("summary.json"))]
    assert len(runs) == 4
    seen = {(r.summary["choices"]["init"], r.summary["config"]["lr"]["value"]) for r in runs}
    assert seen == {(i, lr) for i in ("xavier_uniform", "kaiming_normal") for lr in (0.1, 0.01)}
    assert all(r.summary["status"] == "completed" and len(r.layers) > 0 for r in runs)
