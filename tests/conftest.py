"""Shared test setup: real MNIST from INITLAB_DATA (or ../shared/data), a private data cache,
and a helper that composes the real conf/ exactly as the `initlab` command does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"


def _mnist_root() -> Path:
    for candidate in (os.environ.get("INITLAB_DATA"), REPO.parent / "shared" / "data", REPO / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            # absolute: tests link to the files from, and run the command in, folders of their own
            # (INITLAB_DATA=../shared/data, as the README allows, is relative to where pytest started)
            return Path(candidate).resolve()
    raise RuntimeError("MNIST not found: set INITLAB_DATA to a folder holding MNIST/raw/ "
                       "(the first README command downloads it into data/)")


@pytest.fixture(scope="session", autouse=True)
def _environment(tmp_path_factory):
    # Set before any config is composed: data.root and data.cache_dir read these variables.
    os.environ["INITLAB_DATA"] = str(_mnist_root())
    os.environ["INITLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


def make_config(*overrides: str):
    """The composed config for `initlab <overrides>` (progress bars off for test logs)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=["trainer.progress=false", *overrides])


@pytest.fixture
def config():
    return make_config


@pytest.fixture
def replayed(monkeypatch):
    """CUDA graphs stood in for on the CPU (replayed_graphs.ReplayedEagerly), wherever trainer.cuda_graphs is on."""
    from replayed_graphs import put_in_place

    put_in_place(monkeypatch)
