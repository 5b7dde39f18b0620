"""Data: deterministic synthetic problem, batches by index, a disk cache safe under concurrency."""

import subprocess
import sys

import pytest
import torch

from initlab.build import data

from initlab.store import whole_files
from initlab.config.check import validate

from conftest import make_config


def synthetic(*overrides):
    return validate(make_config("data=synthetic", *overrides))["data"]


def test_synthetic_is_deterministic_and_shaped_like_mnist():
    a = data.Synthetic(True, 100, 20, 784, 10, 0.15, data_seed=0)
    b = data.Synthetic(True, 100, 20, 784, 10, 0.15, data_seed=0)
    c = data.Synthetic(True, 100, 20, 784, 10, 0.15, data_seed=1)
    assert torch.equal(a.data, b.data) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.data, c.data)
    assert a.data.shape == (100, 784) and set(a.targets.tolist()) <= set(range(10))


def test_batches_cover_every_sample_once_per_epoch():
    parts = data.batches(1050, 200, torch.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [200] * 5 + [50]
    assert sorted(torch.cat(parts).tolist()) == list(range(1050))


def test_cache_round_trip_equals_a_fresh_build(tmp_path):
    cfg = synthetic("data.cache=true", f"data.cache_dir={tmp_path}")
    built = data._build(cfg)
    data._memory.clear()
    first = data.load(cfg, torch.device("cpu"))  # builds and writes the cache
    data._memory.clear()
    second = data.load(cfg, torch.device("cpu"))  # reads it back
    assert len(list(tmp_path.glob("*.pt"))) == 1
    for tensors in (first, second):
        assert torch.equal(tensors.train_x, built.train_x) and torch.equal(tensors.test_y, built.test_y)


@pytest.mark.slow  # four processes building one cache at once
def test_processes_starting_together_leave_one_valid_cache(tmp_path):
    script = (
        "import sys, torch; from initlab.build import data\n"
        "cfg = {'name': 'synthetic', 'mean': 0.0, 'std': 1.0, 'cache': True, 'cache_dir': sys.argv[1],\n"
        "       'source': {'_target_': 'initlab.data.Synthetic', 'num_train': 20000, 'num_test': 100,\n"
        "                  'in_features': 784, 'num_classes': 10, 'separation': 0.15, 'data_seed': 0}}\n"
        "t = data.load(cfg, torch.device('cpu'))\n"
        "print(float(t.train_x.double().sum()))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    sums = {p.communicate(timeout=300)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(sums) == 1  # every process saw the same tensors
    assert len(list(tmp_path.glob("*.pt"))) == 1 and not list(tmp_path.glob("*.tmp*"))


KILLED_WHILE_CACHING = (
    "import os, sys, torch; from initlab.build import data; from initlab.store import whole_files\n"
    "whole_files._NAMELESS_FILES = sys.argv[2] == 'nameless'\n"
    "def killed(obj, f, *args, **kwargs):  # the first megabyte of the cache, then kill -9\n"
    "    f.write(b'PK' + bytes(1_000_000)); f.flush(); os.kill(os.getpid(), 9)\n"
    "torch.save = killed\n"
    "cfg = {'name': 'synthetic', 'mean': 0.0, 'std': 1.0, 'cache': True, 'cache_dir': sys.argv[1],\n"
    "       'source': {'_target_': 'initlab.data.Synthetic', 'num_train': 2000, 'num_test': 100,\n"
    "                  'in_features': 784, 'num_classes': 10, 'separation': 0.15, 'data_seed': 0}}\n"
    "data.load(cfg, torch.device('cpu'))\n"
)


@pytest.mark.parametrize("how", ["nameless", "named temporary"])
def test_a_cache_build_killed_mid_write_leaves_no_cache_and_the_next_load_builds_it_leaving_no_temporary(tmp_path, how):
    if how == "nameless" and not whole_files._NAMELESS_FILES:
        pytest.skip("no O_TMPFILE or /proc here")
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_CACHING, str(tmp_path), how])
    assert killed.returncode == -9
    left = [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")]
    if how == "nameless":  # the megabyte vanished with the process
        assert left == []
    else:  # the temporary stays until the next build
        assert len(left) == 1 and left[0].startswith(".synthetic-") and ".pt.tmp" in left[0]
    cfg = synthetic("data.cache=true", f"data.cache_dir={tmp_path}", "data.source.num_train=2000",
                    "data.source.num_test=100")
    data._memory.clear()
    loaded = data.load(cfg, torch.device("cpu"))
    assert torch.equal(loaded.train_x, data._build(cfg).train_x)
    assert [p.suffix for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [".pt"]  # the temporary went too
    data._memory.clear()
