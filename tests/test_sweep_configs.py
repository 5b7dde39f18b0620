"""Derived sweep-job configs (initlab.sweep.job_configs) equal Hydra's full composition, key for key."""

import itertools

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

import initlab.sweep.job_names  # noqa: F401  (registers the initlab_job resolver that names job folders)
from initlab.config.check import check, validate
from initlab.sweep.job_configs import SweepConfigs

from conftest import CONF

MASTER = ["data=synthetic", "trainer.max_steps=2", "hydra.sweep.dir=sweep"]


@pytest.fixture
def loaders():
    def make():
        return ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF)))
    plain = make()
    master = plain.load_configuration("config", MASTER, RunMode.MULTIRUN)
    return plain, SweepConfigs(make()), master


def container(config):
    return OmegaConf.to_container(config, resolve=False)


_FULL: dict[tuple, dict] = {}


def composed_in_full(plain, master, overrides) -> dict:
    """container(Hydra's full composition of MASTER + overrides), composed once per module: the same
    conf/ and MASTER give the same config whichever loader composes it (~0.1 s each, 18 jobs, four tests)."""
    key = tuple(overrides)
    if key not in _FULL:
        _FULL[key] = container(plain.load_sweep_config(master, overrides))
    return _FULL[key]


JOBS = [[f"init={i}", f"lr.value={lr}", f"trainer.seed={s}", "model.depth=3"]
        for i, lr, s in itertools.product(["kaiming_normal", "xavier_uniform", "timm/trunc_normal"], [0.1, 1e-3, 2],
                                          [0, 7])]


def test_derived_configs_equal_full_composition(loaders):
    plain, fast, master = loaders
    for overrides in JOBS:
        derived = fast.load_sweep_config(master, overrides)
        full = plain.load_sweep_config(master, overrides)
        _FULL.setdefault(tuple(overrides), container(full))
        assert container(derived) == container(full), overrides
        assert OmegaConf.to_yaml(derived) == OmegaConf.to_yaml(full)
        assert derived.hydra.job.override_dirname == full.hydra.job.override_dirname
        assert OmegaConf.select(derived, "hydra.sweep.subdir") == OmegaConf.select(full, "hydra.sweep.subdir")
    assert fast.composed == 3  # one per init choice


def test_a_validate_only_check_keeps_nothing_and_the_launchers_configs_still_equal_full_composition(loaders):
    """The cluster launchers' loader: the sweeper's check applies a derivable job's values to one scratch copy
    of its base, keeps nothing, and fails where composition fails; the launcher's configs derive as before."""
    plain, fast, master = loaders
    fast.validate_only = True
    for overrides in JOBS:
        fast.load_sweep_config(master, overrides)
    assert fast.composed == 3 and fast.checked == {} and fast.derived == {}  # nothing kept per job
    assert len(fast.scratches) == 3
    for overrides in reversed(JOBS):  # the scratches, last set by the last job, leak into no config
        assert container(fast.for_launch(master, overrides)) == composed_in_full(plain, master, overrides)
    assert fast.composed == 3
    # a job planned on its signature's scratch copy: the same config as its full composition, the same
    # settings, folder and recipe as its derived config, whichever jobs of its signature came before
    for overrides in JOBS[::2] + JOBS[1::2]:
        scratch, derived = fast.scratch(master, overrides), fast.for_launch(master, overrides)
        assert container(scratch) == composed_in_full(plain, master, overrides)
        assert fast.settings(scratch) == fast.settings(derived) and fast.subdir(scratch) == fast.subdir(derived)
        assert fast.recipe(scratch) == fast.recipe(derived) is not None
        assert str(scratch.hydra.sweep.dir) == str(derived.hydra.sweep.dir)
    bad = ["init=kaiming_normal", "lr.value=0.1", "trainer.sed=0", "model.depth=3"]
    with pytest.raises(Exception) as checked:
        fast.load_sweep_config(master, bad)
    with pytest.raises(Exception) as full:
        plain.load_sweep_config(master, bad)
    assert type(checked.value) is type(full.value)


@pytest.mark.parametrize("overrides", [
    ["+init.extra=1", "trainer.seed=1"],          # an addition
    ["init=kaiming_normal", "~init.a"],           # a deletion
    ["trainer.stop_on=[stuck]", "trainer.seed=2"],
])
def test_other_override_kinds_are_composed_or_equal(loaders, overrides):
    plain, fast, master = loaders
    fast.load_sweep_config(master, ["init=kaiming_normal", "trainer.seed=0"])  # a base to derive from
    assert container(fast.load_sweep_config(master, overrides)) == container(plain.load_sweep_config(master, overrides))


def test_a_bad_value_fails_as_composition_does(loaders):
    plain, fast, master = loaders
    fast.load_sweep_config(master, ["trainer.seed=0"])
    with pytest.raises(Exception) as derived:
        fast.load_sweep_config(master, ["trainer.sed=1"])
    with pytest.raises(Exception) as full:
        plain.load_sweep_config(master, ["trainer.sed=1"])
    assert type(derived.value) is type(full.value)


def test_plain_containers_are_the_configs(loaders):
    # SweepConfigs.plain assembles a job's plain container from its base's: equal to OmegaConf's own,
    # after what the launcher sets per job (number, output folder).
    _, fast, master = loaders
    for num, overrides in enumerate(JOBS + [["+init.extra=1", "trainer.seed=1"]]):
        config = fast.load_sweep_config(master, overrides)
        with open_dict(config):
            config.hydra.job.id = config.hydra.job.num = num
            config.hydra.runtime.output_dir = f"/somewhere/{num}"
        plain = fast.plain(config)
        if overrides[0].startswith("+"):  # composed in full, nothing to assemble from
            assert plain is None
            continue
        assert plain == OmegaConf.to_container(config, resolve=False, enum_to_str=True), overrides
        assert list(plain) == list(config) and list(plain["hydra"]) == list(config.hydra)  # the same order
    base = next(iter(fast.plains.values()))
    assert base["hydra"]["runtime"]["output_dir"] != "/somewhere/0"  # the shared base was not changed


def _master(*extra):
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF)))
    return loader.load_configuration("config", MASTER + list(extra), RunMode.MULTIRUN)


def test_settings_and_folders_are_what_validate_and_hydra_give(loaders, monkeypatch):
    # The launcher takes each job's settings and folder from SweepConfigs (its base's resolved task keys,
    # job_dirname of the override_dirname): the same as validate() and the resolved hydra.sweep.subdir.
    monkeypatch.setenv("INITLAB_DATA", "/data/from/the/environment")
    _, fast, _ = loaders
    master = _master("data=mnist")  # data.source.root: ${oc.env:INITLAB_DATA,data}, which reads no node
    for overrides in JOBS + [["+init.extra=1", "trainer.seed=1"]]:
        config = fast.load_sweep_config(master, overrides)
        settings = fast.settings(config)
        if overrides[0].startswith("+"):  # composed in full: not derived
            assert settings is None and fast.subdir(config) is None
            continue
        assert settings is not None and check(settings) == validate(config), overrides
        assert settings["data"]["source"]["root"] == "/data/from/the/environment"
        assert fast.subdir(config) == OmegaConf.select(config, "hydra.sweep.subdir"), overrides
    # each job's settings are its own: changing one changes no other
    a, b = (fast.settings(fast.load_sweep_config(master, o)) for o in JOBS[:2])
    a["data"]["source"]["root"] = "changed"
    assert b["data"]["source"]["root"] == "/data/from/the/environment"


def test_a_task_key_that_reads_another_node_is_resolved_per_job(tmp_path):
    # A user's model option (beside ours, as with --config-dir) whose width follows trainer.seed, which
    # each job sets: a copy of the base's resolved model would give every job the first one's width,
    # so these are resolved in full (settings() says None); likewise a folder name that reads a node.
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "seeded.yaml").write_text((CONF / "model" / "mlp.yaml").read_text().replace(
        "width: 200", "width: ${trainer.seed}"))
    search_path = create_config_search_path(str(CONF))
    search_path.prepend("test", f"file://{tmp_path}")
    fast = SweepConfigs(ConfigLoaderImpl(config_search_path=search_path))
    master = fast.load_configuration("config", MASTER + ["hydra.sweep.subdir=seed${trainer.seed}"], RunMode.MULTIRUN)
    for seed in (3, 5):
        config = fast.load_sweep_config(master, ["model=seeded", f"trainer.seed={seed}"])
        assert fast.settings(config) is None and fast.subdir(config) is None
        assert validate(config)["model"]["width"] == seed
        assert OmegaConf.select(config, "hydra.sweep.subdir") == f"seed{seed}"
    assert fast.composed == 1  # the second job was derived all the same


def test_a_loader_sent_with_a_groups_bases_derives_its_jobs_there(loaders):
    # cluster_job.GroupTask: the launcher goes to a submitit job pickled, its loader with it, and the bases
    # its group's configs derive from go beside it; there the jobs derive as here, none composed in full.
    # (What pickle does with the state; Hydra's own loader is pickled as is, by submitit in test_cluster:
    # pickling it here would fail after Hydra's launcher tests re-import its config-source plugins.)
    def pickled(loader):
        state = loader.__getstate__()
        assert set(state) == {"loader", "groups"} and state["loader"] is loader.loader
        copy = SweepConfigs.__new__(SweepConfigs)
        copy.__setstate__(state)
        return copy

    plain, fast, master = loaders
    configs = [fast.load_sweep_config(master, overrides) for overrides in JOBS]
    group = JOBS[:6]  # kaiming_normal's 6 jobs: one base
    bases = fast.bases_of([fast.recipe(config) for config in configs[:6]])
    assert len(bases) == 1 and len(fast.bases) == 3
    there = pickled(fast)
    assert there.bases == {} and there.groups == fast.groups and there.checked == {}  # no cache travels
    there.add_bases(bases)
    for overrides in group:
        assert container(there.for_launch(master, overrides)) == container(plain.load_sweep_config(master, overrides))
    assert there.composed == 0
    # without the bases it still makes them, composing in full
    bare = pickled(fast)
    assert container(bare.for_launch(master, group[0])) == container(plain.load_sweep_config(master, group[0]))
    assert bare.composed == 1
