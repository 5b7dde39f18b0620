"""Reports and resumes over damaged run folders: a run whose files cannot be read is `corrupt`, named
with the file and the problem; every readable run is still reported; a resumed sweep runs it again."""

import shutil

import pandas as pd
import pytest
from omegaconf import OmegaConf

from initlab.store import records
from initlab.sweep.callbacks import SweepEnd, sweep_statuses
from initlab.cli import report_main
from initlab.report import page as page_module
from initlab.report.tables import load

from test_cli import SMALL
from test_sweeps import run_cli

ARGS = ["-m", *SMALL, "trainer.max_steps=3", "init=xavier_uniform,kaiming_normal,orthogonal", "hydra.sweep.dir=sweep"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    run_cli(*ARGS, cwd=root)
    return root / "sweep"


@pytest.fixture
def sweep(finished, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(finished, copy)
    return copy


def folders(sweep):
    return sorted(p.parent for p in sweep.glob("*/.hydra"))


def cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("damage, reason", [
    (lambda f: cut(f / records.SUMMARY), "summary.json: not valid JSON"),
    (lambda f: (f / records.SUMMARY).write_text('{"status": "completed"}'), "summary.json: not a run summary"),
    (lambda f: cut(f / records.LAYERS), "layers.parquet: "),
    (lambda f: (f / records.CURVES).unlink(), "curves.parquet: missing"),
    (lambda f: (f / records.LAYERS).write_bytes(b""), "layers.parquet: "),
])
def test_a_damaged_run_is_corrupt_and_the_others_are_reported(sweep, tmp_path, capsys, monkeypatch, damage, reason):
    # The figures are drawn from the readable runs' tables, which hold nothing of a corrupt run whatever its
    # damage: the first case draws them; the others write the report without (~1.2 s each)
    drawn = reason == "summary.json: not valid JSON"
    if not drawn:
        monkeypatch.setattr(page_module.catalogue, "all_figures", lambda *a, **k: {})
    victim = folders(sweep)[1]
    damage(victim)
    data = load([sweep])
    runs = data.runs.set_index("run")
    assert list(runs.status).count("completed") == 2 and runs.loc[victim.name, "status"] == "corrupt"
    assert runs.loc[victim.name, "error"].startswith(reason)
    # its configuration is still known from .hydra/, and it adds no rows to the tables
    assert runs.loc[victim.name, "init"] in ("xavier_uniform", "kaiming_normal", "orthogonal")
    assert victim.name not in set(data.layers.run) and len(set(data.layers.run)) == 2

    assert report_main([str(sweep), "--out", str(tmp_path / "report")]) == 1
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith("initlab-report: 1 of 3 runs damaged (status corrupt)")
    page = (tmp_path / "report" / "report.md").read_text()
    assert "1 corrupt" in page and f"`{victim.name}`](<../sweep/{victim.name}>): **corrupt**: {reason}" in page
    assert (tmp_path / "report" / "figures" / "accuracy_heatmap.png").exists() == drawn
    assert pd.read_csv(tmp_path / "report" / "runs.csv").status.tolist().count("corrupt") == 1
    assert sweep_statuses(sweep)["corrupt"] == (1 if "summary" in reason else 0)


def test_a_folder_with_only_hydra_files_reports_without_figures(sweep, tmp_path):
    for folder in folders(sweep):
        for name in (records.SUMMARY, records.LAYERS, records.CURVES):
            (folder / name).unlink()
    assert report_main([str(sweep / folders(sweep)[0].name), "--out", str(tmp_path / "one")]) == 0
    assert report_main([str(sweep), "--out", str(tmp_path / "all")]) == 0
    page = (tmp_path / "all" / "report.md").read_text()
    assert "3 unfinished" in page and "No figures: none of the 3 runs has records yet" in page


def test_an_unreadable_hydra_config_of_an_unfinished_run_is_reported(sweep):
    victim = folders(sweep)[0]
    (victim / records.SUMMARY).unlink()
    (victim / ".hydra" / "config.yaml").write_text("init: {_target_: [unclosed\n")
    runs = load([sweep]).runs.set_index("run")
    assert runs.loc[victim.name, "status"] == "unfinished"
    assert runs.loc[victim.name, "error"].startswith(".hydra/config.yaml: unreadable")


@pytest.mark.slow  # a resume through the CLI; the damaged runs themselves are reported in the fast part
def test_a_resumed_sweep_runs_damaged_runs_again_and_skips_the_rest(sweep):
    victims = folders(sweep)[:2]
    cut(victims[0] / records.SUMMARY)
    cut(victims[1] / records.LAYERS)
    untouched = folders(sweep)[2] / records.SUMMARY
    before = untouched.read_bytes()
    result = run_cli(*ARGS, cwd=sweep.parent)
    assert result.stdout.count("skipped:") == 1 and untouched.read_bytes() == before
    assert "3 runs: 3 completed, 0 diverged, 0 failed, 0 unfinished, 0 corrupt" in result.stdout + result.stderr
    assert sorted(load([sweep]).runs.status) == ["completed"] * 3


def test_a_damaged_summary_makes_the_sweep_end_say_so(sweep):
    cut(folders(sweep)[0] / records.SUMMARY)
    with pytest.raises(SystemExit) as end:
        SweepEnd().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert end.value.code == 1
