"""The built wheel carries initlab's configs, and an installed initlab finds them inside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import CONF, REPO


def test_the_wheel_holds_every_config_file(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    str(REPO), "-w", str(tmp_path)], check=True, capture_output=True)
    wheel, = tmp_path.glob("initlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"initlab/conf/{p.relative_to(CONF).as_posix()}" for p in CONF.rglob("*.yaml")}
    assert len(configs) > 40 and configs <= names, sorted(configs - names)
    assert {"initlab/cli.py", "hydra_plugins/initlab_vectorized/vectorized_launcher.py"} <= names


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
