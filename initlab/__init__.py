"""initlab: how does the way a network's weights are initialized change what happens when it trains?

The package is laid out by stage, in the order data flows (docs/architecture.md):
cores, activations, theory -> config -> store -> diagnosis -> loggers -> build -> train -> stacked -> report
-> sweep -> cli
(a module imports only from its own stage or an earlier one: tests/test_architecture.py).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from importlib import metadata


def __getattr__(name: str):
    # One version string, pyproject.toml's as installed; looked up when asked (metadata costs ms).
    if name == "__version__":
        try:
            return metadata.version("initlab")
        except metadata.PackageNotFoundError:  # a checkout imported without being installed
            return "unknown"
    raise AttributeError(f"module 'initlab' has no attribute {name!r}")


# The names that configs, recorded runs and users' code spell, and the modules that hold them now.
# A config's `_target_: initlab.init.kaiming_normal_` is part of a run's recorded identity
# (store/provenance.py), and users' init modules import `initlab.schema`: these names stay valid.
PUBLIC_NAMES = {
    "initlab.init": "initlab.build.init",
    "initlab.bias": "initlab.build.bias",
    "initlab.model": "initlab.build.model",
    "initlab.schedule": "initlab.build.schedule",
    "initlab.param": "initlab.build.param",
    "initlab.data": "initlab.build.data",
    "initlab.schema": "initlab.config.schema",
    "initlab.records": "initlab.store.records",
    "initlab.callbacks": "initlab.sweep.callbacks",  # recorded in every old sweep's .hydra/hydra.yaml
}


class _PublicNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import initlab.init` gives the very module `initlab.build.init` (one module object, not a copy)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in PUBLIC_NAMES else None

    def create_module(self, spec):
        return importlib.import_module(PUBLIC_NAMES[spec.name])

    def exec_module(self, module):
        # the import system stamped the alias's spec on the real module: give it its own back
        module.__spec__ = importlib.machinery.PathFinder.find_spec(module.__name__, sys.modules[
            module.__name__.rpartition(".")[0]].__path__)


if not any(isinstance(finder, _PublicNames) for finder in sys.meta_path):
    sys.meta_path.append(_PublicNames())

importlib.import_module("initlab.store.keys")  # registers the initlab_keys resolver that conf/config.yaml uses
