"""A stacked member's job folder (initlab.sweep.job_folders) against Hydra's own run_job, and the
background file writes the vectorized launcher uses (initlab.store.file_writes)."""

import copy
import threading
import time

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra._internal.callbacks import Callbacks
from hydra.core.utils import JobStatus, run_job, setup_globals
from hydra.types import HydraContext
from omegaconf import OmegaConf, open_dict

from initlab.store import whole_files
import initlab.sweep.job_names  # noqa: F401  (registers the initlab_job resolver that names job folders)
from initlab.store.file_writes import BackgroundWrites, write
from initlab.sweep.job_folders import HydraYaml, JobLogs, resolve_simple, write_member

from conftest import CONF


def job_config(sweep_dir, *overrides):
    """A sweep job's composed config with its hydra node, as a launcher receives it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = compose("config", overrides=["data=synthetic", *overrides], return_hydra_config=True)
    with open_dict(config):
        config.hydra.sweep.dir = str(sweep_dir)
        config.hydra.job.num = config.hydra.job.id = 3
    return config


def task(cfg):
    """What a task sees of its job: its config, HydraConfig (whose interpolations reach the task's keys)."""
    hc = HydraConfig.get()
    return {"seed": cfg.trainer.seed, "output_dir": hc.runtime.output_dir, "run_dir": hc.run.dir,
            "num": hc.job.num, "overrides": list(hc.overrides.task), "has_hydra": "hydra" in cfg}


def without_places(hydra_yaml: dict) -> dict:
    hydra = hydra_yaml["hydra"]
    hydra["sweep"].pop("dir"), hydra["runtime"].pop("output_dir")
    return hydra_yaml


def test_a_member_folder_is_what_run_job_writes(tmp_path):
    setup_globals()
    overrides = ["trainer.seed=5", "init=kaiming_normal", "hydra.run.dir=runs/${data.name}/${trainer.seed}"]
    ours, theirs = job_config(tmp_path / "ours", *overrides), job_config(tmp_path / "theirs", *overrides)
    for config in (ours, theirs):
        with open_dict(config):
            config.hydra.overrides.task = overrides[:2]
    context = HydraContext(config_loader=None, callbacks=Callbacks(theirs))
    want = run_job(task_function=task, config=theirs, job_dir_key="hydra.sweep.dir",
                   job_subdir_key="hydra.sweep.subdir", hydra_context=context)
    before = HydraConfig.instance().cfg
    got = write_member(ours, task, Callbacks(ours), JobLogs(), HydraYaml())
    assert HydraConfig.instance().cfg is before  # restored, as run_job restores it
    assert got.status == want.status == JobStatus.COMPLETED
    folder = {"ours": tmp_path / "ours", "theirs": tmp_path / "theirs"}
    assert got.return_value == {**want.return_value, "output_dir": str(next(folder["ours"].iterdir()))}
    assert got.return_value["run_dir"] == "runs/synthetic/5" and not got.return_value["has_hydra"]
    assert got.overrides == want.overrides and got.working_dir == want.working_dir
    assert OmegaConf.to_container(got.cfg) == OmegaConf.to_container(want.cfg)
    assert without_places(OmegaConf.to_container(got.hydra_cfg)) == without_places(OmegaConf.to_container(want.hydra_cfg))
    # The same files, byte for byte but for where they are.
    [ours_dir], [theirs_dir] = folder["ours"].iterdir(), folder["theirs"].iterdir()
    assert ours_dir.name == theirs_dir.name
    assert sorted(p.name for p in ours_dir.rglob("*")) == sorted(p.name for p in theirs_dir.rglob("*"))
    for name in ("config.yaml", "overrides.yaml"):
        assert (ours_dir / ".hydra" / name).read_bytes() == (theirs_dir / ".hydra" / name).read_bytes()
    hydra_yaml = [(d / ".hydra" / "hydra.yaml").read_text().replace(str(folder[k]), "SWEEP")
                  for d, k in ((ours_dir, "ours"), (theirs_dir, "theirs"))]
    assert hydra_yaml[0] == hydra_yaml[1]


def test_each_hydra_file_is_written_whole(tmp_path, monkeypatch):
    # Through whole_files (a kill mid-write leaves the old file or none, never half a YAML), and the
    # bytes are still OmegaConf's.
    written = []
    real = whole_files.write
    monkeypatch.setattr(whole_files, "write", lambda path, fill: (written.append(path), real(path, fill)))
    setup_globals()
    config = job_config(tmp_path, "trainer.seed=5")
    with open_dict(config):
        config.hydra.overrides.task = ["trainer.seed=5"]
    write_member(config, task, Callbacks(config), JobLogs(), HydraYaml())
    [folder] = tmp_path.iterdir()
    assert sorted(written) == sorted((folder / ".hydra" / name) for name in ("config.yaml", "hydra.yaml", "overrides.yaml"))
    assert (folder / ".hydra" / "overrides.yaml").read_text() == OmegaConf.to_yaml(["trainer.seed=5"])


def test_yaml_by_parts_equals_omegaconf(tmp_path):
    config = job_config(tmp_path)
    plain = OmegaConf.to_container(config, resolve=False, enum_to_str=True)
    parts = HydraYaml()
    assert parts.to_yaml(plain) == OmegaConf.to_yaml(config)
    # Reused parts: a changed value, an int (written without PyYAML), a key PyYAML quotes.
    for seed in (0, 7, -3):
        changed = copy.deepcopy(plain)
        changed["trainer"]["seed"] = seed
        changed["hydra"]["job"]["num"] = seed
        assert parts.to_yaml(changed) == OmegaConf.to_yaml(changed)
    odd = {"on": {"yes": 1, "n": 2, "a": {"b": [1, {"c": "x\ny"}], "t": True, "f": 1.0, "q": "1"}}, "e": {},
           "l": [], "s": "multi\nline\n", "u": "ü", "nil": None, "k": {"x y": 1, "z": 0}}
    assert parts.to_yaml(odd) == OmegaConf.to_yaml(odd)
    assert parts.to_yaml([1, "a"]) == OmegaConf.to_yaml([1, "a"])


def test_background_writes_keep_order_and_stop_at_a_failure(tmp_path):
    log, main = [], threading.get_ident()
    write(lambda: log.append(("now", threading.get_ident() == main)))
    assert log == [("now", True)]

    def slow(name):
        def fn():
            time.sleep(0.01)
            log.append(name)
        return fn
    log.clear()
    with BackgroundWrites():
        for name in "abc":
            write(slow(name))
        assert log != ["a", "b", "c"]  # queued, not written yet
    assert log == ["a", "b", "c"]  # all done, in order, when the block ends

    log.clear()
    with pytest.raises(OSError, match="disk full"):
        with BackgroundWrites():
            write(slow("tables"))
            write(lambda: (_ for _ in ()).throw(OSError("disk full")))
            write(slow("summary"))  # never lands beside tables that did not
    assert log == ["tables"]


@pytest.mark.parametrize("template", [
    "${hydra.runtime.output_dir}/${hydra.job.name}.log", "plain.log", "${a}-${a}", "x${hydra.job.name}y",
    "${oc.env:HOME}/x.log", r"\${a}.log", "${.a}", "${n}", "${hydra.job.missing}", "${a_ref}", "${hydra.job}",
])
def test_simple_interpolations_resolve_as_omegaconf_does(template):
    config = OmegaConf.create({"a": "A", "n": 3, "a_ref": "${a}", "f": template,
                               "hydra": {"runtime": {"output_dir": "/out/x=1"}, "job": {"name": "cli"}}})
    plain = OmegaConf.to_container(config, resolve=False)
    ours = resolve_simple(template, plain)
    if ours is not None:  # None: left to OmegaConf (a resolver, an escape, a number, a missing key, ...)
        assert ours == OmegaConf.select(config, "f")
    simple = {"${hydra.runtime.output_dir}/${hydra.job.name}.log", "plain.log", "${a}-${a}", "x${hydra.job.name}y"}
    assert (ours is not None) == (template in simple)
