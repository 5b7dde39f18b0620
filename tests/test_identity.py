"""A run's identity is the computation it did: stable across initlab versions, so a resumed sweep
does not train again what an earlier version finished. tests/data/run-initlab-0.2.0 is a run
recorded by initlab 0.2.0 (before identity versions), with the overrides in RECORDED."""

import copy
import json
import shutil
from pathlib import Path

import pytest

from initlab.store import provenance
from initlab.config.check import validate
from initlab.train.runner import finished_before, run

from conftest import make_config

RECORDED_RUN = Path(__file__).parent / "data" / "run-initlab-0.2.0"
RECORDED = ["data=synthetic", "data.source.num_train=600", "data.source.num_test=100", "model.width=32",
            "trainer.max_steps=2"]


@pytest.fixture
def recorded(tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(RECORDED_RUN, folder)
    return folder


def summary_of(folder):
    return json.loads((folder / "summary.json").read_text())


def test_a_run_recorded_by_initlab_0_2_0_is_recognized_and_not_trained_again(recorded):
    old = summary_of(recorded)
    assert "identity_version" not in old and old["versions"]["initlab"] == "0.2.0"
    before = (recorded / "summary.json").read_bytes()
    result = run(make_config(*RECORDED), output_dir=recorded)
    assert (recorded / "summary.json").read_bytes() == before and result.metrics == old["metrics"]
    # where the data lives, progress bars and the diagnosis' thresholds are not the computation
    same = validate(make_config(*RECORDED, "trainer.progress=true", "data.cache_dir=/elsewhere",
                                "diagnose.vanishing_ratio=1e-3"))
    assert provenance.config_hash(same) == provenance.recorded_hash(old) == old["config_hash"]


def test_another_computation_in_the_same_folder_trains(recorded):
    run(make_config(*RECORDED[:-1], "trainer.max_steps=3"), output_dir=recorded)
    new = summary_of(recorded)
    assert new["metrics"]["steps"] == 3 and new["identity_version"] == provenance.IDENTITY_VERSION


def test_a_new_key_with_a_neutral_default_keeps_old_runs_identity(recorded, monkeypatch):
    settings = validate(make_config(*RECORDED))
    upgraded = copy.deepcopy(settings)
    upgraded["trainer"]["fused_step"] = False  # a key a later initlab might add; False computes what 0.2.0 did
    assert provenance.config_hash(upgraded) != provenance.config_hash(settings)  # unregistered: a new identity
    monkeypatch.setitem(provenance.NEUTRAL_DEFAULTS, "trainer.fused_step", False)
    assert provenance.config_hash(upgraded) == provenance.recorded_hash(summary_of(recorded))
    assert finished_before(recorded, upgraded) is not None
    upgraded["trainer"]["fused_step"] = True  # a different computation
    assert finished_before(recorded, upgraded) is None


def test_a_renamed_key_is_migrated_by_identity_version(recorded, monkeypatch):
    def rename(config):  # version 1 -> 2: trainer.max_steps became trainer.step_limit
        config = copy.deepcopy(config)
        config["trainer"]["step_limit"] = config["trainer"].pop("max_steps")
        return config

    settings = rename(validate(make_config(*RECORDED)))
    old = summary_of(recorded)
    assert provenance.recorded_hash(old) != provenance.config_hash(settings)
    monkeypatch.setattr(provenance, "IDENTITY_VERSION", 2)
    monkeypatch.setitem(provenance.MIGRATIONS, 1, rename)
    assert provenance.recorded_hash(old) == provenance.config_hash(settings)
    assert finished_before(recorded, settings) is not None
    # a run from a newer initlab cannot be compared: it counts as unfinished here
    assert provenance.recorded_hash({**old, "identity_version": 3}) is None
