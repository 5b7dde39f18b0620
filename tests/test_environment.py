"""Environment errors are one line: a device this machine lacks, damaged dataset files, an output or
cache folder that cannot be written. Each names the value and what is there instead."""

import os
import shutil
import struct
import subprocess
import sys

import pytest
import torch

from initlab.build import data

from initlab.build import environment
from initlab.config.check import validate

from conftest import make_config, run_initlab
from test_cli import SMALL

RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def initlab(*args, cwd, env=None, fresh=True):
    """The command in a fresh process (what only one proves: nothing else on stderr, no import's warning),
    or with fresh=False in this one (conftest.run_initlab), for a second path to the same one line."""
    if not fresh:
        return run_initlab(list(args), cwd=cwd, env=env)
    return subprocess.run([sys.executable, "-m", "initlab", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def test_cuda_on_a_machine_without_it_names_what_there_is(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(environment.Unavailable, match=r"^trainer.device=cuda: no CUDA GPU here .*available: cpu"):
        environment.resolve_device("cuda")
    assert environment.resolve_device("auto") == torch.device("cpu")


def test_a_gpu_index_that_does_not_exist_names_the_gpus_there_are(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(environment.Unavailable,
                       match=r"^trainer.device=cuda:2: this machine has 2 CUDA GPU\(s\); available: cpu, cuda:0, cuda:1"):
        environment.check_device("cuda:2")
    environment.check_device("cuda:1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("launcher", ["basic", "vectorized"])
def test_the_command_prints_one_line_for_a_missing_gpu(tmp_path, launcher):
    multirun = ["-m", "hydra/launcher=vectorized", "init=normal,zeros"] if launcher == "vectorized" else []
    line = one_line(initlab(*multirun, *SMALL, "trainer.device=cuda:1", "trainer.max_steps=1", cwd=tmp_path,
                            fresh=launcher == "basic"))
    assert line.startswith("initlab: trainer.device=cuda:1: no CUDA GPU here") and "available: cpu" in line
    assert not list(tmp_path.rglob("summary.json"))


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, mode):
    (tmp_path / "a_file").write_text("")
    args = ["hydra.run.dir=a_file/run"] if mode == "run" else ["-m", "hydra.sweep.dir=a_file/sweep", "init=normal,zeros"]
    line = one_line(initlab(*args, *SMALL, "trainer.max_steps=1", cwd=tmp_path, fresh=mode == "run"))
    key = "hydra.run.dir" if mode == "run" else "hydra.sweep.dir"
    assert line.startswith(f"initlab: {key}=a_file/") and "Not a directory" in line


def test_check_writable_makes_the_folder_and_leaves_nothing_behind(tmp_path):
    environment.check_writable(tmp_path / "new" / "deeper", "hydra.run.dir")
    assert (tmp_path / "new" / "deeper").is_dir() and not list((tmp_path / "new" / "deeper").iterdir())


def test_the_real_mnist_files_pass_the_idx_check_and_their_sizes_are_the_headers():
    raw = data._raw_files({"_target_": "torchvision.datasets.MNIST", "root": os.environ["INITLAB_DATA"]})[1]
    assert [p.name for p in raw] == list(RAW)
    assert [data.idx_problem(p) for p in raw] == [None] * 4
    assert raw[0].stat().st_size == 16 + 60000 * 28 * 28 and raw[3].stat().st_size == 8 + 10000


@pytest.fixture
def mnist_copy(tmp_path):
    """A copy of MNIST/raw/ to damage (links to the real files, which are read-only)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW:
        (raw / name).symlink_to(os.path.join(os.environ["INITLAB_DATA"], "MNIST", "raw", name))
    return raw


def load_mnist(root):
    settings = validate(make_config(f"data.source.root={root}", "data.cache=false", "data.source.download=false"))
    data._memory.clear()
    return data.load(settings["data"], torch.device("cpu"))


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.write_bytes(open(f, "rb").read()[:1_000_000]),
     "t10k-images-idx3-ubyte: cut short: 1,000,000 bytes, its header (10000 x 28 x 28) needs 7,840,016"),
    (lambda f: f.write_bytes(b"<html>404</html>"), "t10k-images-idx3-ubyte: not an idx file (it starts 3c68746d"),
    (lambda f: f.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 3, 10000)), "t10k-images-idx3-ubyte: cut short inside its header"),
])
def test_a_damaged_dataset_file_is_named_with_what_is_wrong(mnist_copy, damage, message):
    target = mnist_copy / "t10k-images-idx3-ubyte"
    real = target.resolve()
    target.unlink()
    shutil.copyfile(real, target)
    damage(target)
    with pytest.raises(data.DataError) as info:
        load_mnist(mnist_copy.parent.parent)
    assert "\n" not in str(info.value) and message in str(info.value) and str(target) in str(info.value)


def test_a_missing_dataset_file_is_named(mnist_copy):
    (mnist_copy / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(data.DataError, match="missing: t10k-labels-idx1-ubyte"):
        load_mnist(mnist_copy.parent.parent)


def test_an_unreadable_data_cache_is_built_again(tmp_path, caplog):
    settings = validate(make_config("data=synthetic", "data.cache=true", f"data.cache_dir={tmp_path}"))["data"]
    data._memory.clear()
    first = data.load(settings, torch.device("cpu"))
    cache, = tmp_path.glob("*.pt")
    cache.write_bytes(cache.read_bytes()[:100])
    data._memory.clear()
    again = data.load(settings, torch.device("cpu"))
    assert torch.equal(again.train_x, first.train_x) and "cannot be read" in caplog.text
    assert cache.stat().st_size > 1000


def test_a_cache_folder_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    settings = validate(make_config(f"data.cache_dir={tmp_path / 'a_file' / 'cache'}"))["data"]
    data._memory.clear()
    with pytest.raises(data.DataError, match=r"^data.cache_dir=.*a_file/cache: cannot write the data cache there"):
        data.load(settings, torch.device("cpu"))


def test_tf32_is_opt_in_and_set_for_every_run():
    import torch

    from initlab.build.environment import matmul_precision

    matmul_precision(True)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    matmul_precision(False)  # the default: a later run gets exact FP32 again
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_new_trainer_keys_leave_an_existing_runs_identity_unchanged():
    from conftest import make_config
    from initlab.config.check import validate
    from initlab.store.provenance import config_hash

    settings = validate(make_config())
    older = {**settings, "trainer": {k: v for k, v in settings["trainer"].items() if k not in ("tf32", "jacobian_inputs")}}
    assert config_hash(settings) == config_hash(older)
    assert config_hash(validate(make_config("trainer.tf32=true"))) != config_hash(settings)
    # CUDA graphs or not, a step computes the same: a sweep resumed either way skips what finished.
    assert config_hash(validate(make_config("trainer.cuda_graphs=false"))) == config_hash(settings)
    assert config_hash({**settings, "trainer": {k: v for k, v in settings["trainer"].items() if k != "cuda_graphs"}}) \
        == config_hash(settings)
