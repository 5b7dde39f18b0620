"""The vectorized launcher is a standard Hydra launcher plugin: Hydra discovers it, its config is
registered through ConfigStore (any app can say hydra/launcher=vectorized), and Hydra's own launcher
test suites pass against it. Tasks that are not initlab's training run as the basic launcher runs them."""

import pytest
from hydra import version
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from hydra_plugins.initlab_vectorized.vectorized_launcher import VectorizedLauncher


@pytest.fixture(autouse=True)
def _hydra_version_base_unset():
    """Hydra's suites run apps that set no version_base. Another test that imported initlab.cli
    (whose @hydra.main says 1.3) leaves the process-wide base set; put it back to unset for these."""
    base = version.VersionBase.instance()
    saved, base.version_base = base.version_base, version._UNSPECIFIED_
    yield
    base.version_base = saved


def test_discovery():
    assert VectorizedLauncher.__name__ in [x.__name__ for x in Plugins.instance().discover(Launcher)]


def test_config_is_in_the_config_store():
    Plugins.instance()  # importing the plugins registers their configs
    assert "vectorized.yaml" in ConfigStore.instance().list("hydra/launcher")


@pytest.mark.parametrize("launcher_name, overrides", [("vectorized", [])])
class TestVectorizedLauncher(LauncherTestSuite):
    """Hydra's launcher test suite (its example app and task functions, none of them initlab's)."""


@pytest.mark.slow  # Hydra's integration suite runs an app in a process of its own per test; its LauncherTestSuite stays fast
@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [(
    {}, ["-m", "hydra/launcher=vectorized", "hydra/hydra_logging=disabled", "hydra/job_logging=disabled"],
)])
class TestVectorizedLauncherIntegration(IntegrationTestSuite):
    """Hydra's integration suite: a separate app process that picks the launcher from its own config."""


@pytest.mark.slow  # a submitit job (a process) per test; the in-process launcher's suite stays fast
@pytest.mark.parametrize("launcher_name, overrides", [("vectorized_submitit_local", ["hydra.launcher.timeout_min=2"])])
class TestVectorizedSubmititLocalLauncher(LauncherTestSuite):
    """Hydra's launcher suite against the submitit form: other tasks run as Hydra's submitit launcher runs them."""


def test_the_submitit_forms_are_discovered():
    from hydra_plugins.initlab_vectorized.vectorized_launcher import (VectorizedSlurmLauncher,
                                                                       VectorizedSubmititLocalLauncher)

    found = [x.__name__ for x in Plugins.instance().discover(Launcher)]
    assert VectorizedSlurmLauncher.__name__ in found and VectorizedSubmititLocalLauncher.__name__ in found
