"""The built wheel carries initlab's configs, and an installed initlab finds them inside the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import CONF, REPO


def test_the_wheel_holds_every_config_file(tmp_path):
    # Built from a clean copy: an in-tree build would reuse build/lib, hiding a package left out.
    source = tmp_path / "source"
    top = {".venv", "build", ".git", "outputs", ".cache", "data", ".pytest_cache", "initlab.egg-info"}
    shutil.copytree(REPO, source, ignore=lambda folder, names: [
        n for n in names if n == "__pycache__" or (Path(folder) == REPO and n in top)])
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    str(source), "-w", str(tmp_path)], check=True, capture_output=True)
    wheel, = tmp_path.glob("initlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"initlab/conf/{p.relative_to(CONF).as_posix()}" for p in CONF.rglob("*.yaml")}
    assert len(configs) > 40 and configs <= names, sorted(configs - names)
    code = {p.relative_to(REPO).as_posix() for folder in ("initlab", "hydra_plugins") for p in (REPO / folder).rglob("*.py")}
    assert code <= names, sorted(code - names)  # every module, subpackages included


def test_an_installed_package_reads_its_own_configs(tmp_path, monkeypatch):
    # A wheel installs initlab/conf/ beside cli.py; the checkout's conf/ is the fallback.
    from initlab import cli
    package = tmp_path / "initlab"
    (package / "conf").mkdir(parents=True)
    (package / "conf" / "config.yaml").write_text("{}\n")
    monkeypatch.setattr(cli, "__file__", str(package / "cli.py"))
    assert cli.conf_dir() == str(package / "conf")
    monkeypatch.setattr(cli, "__file__", str(REPO / "initlab" / "cli.py"))
    assert cli.conf_dir() == str(CONF)
