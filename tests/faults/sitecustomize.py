"""Fault injection for tests that start initlab as a subprocess (PYTHONPATH=tests/faults).

INITLAB_FAULT=enospc:K makes the K-th write of a run's records (a parquet table or summary.json),
and every later one, fail as a full disk does: half a file lands, then OSError(ENOSPC).
Without INITLAB_FAULT nothing is changed.
"""

import os

_spec = os.environ.get("INITLAB_FAULT", "")
if _spec.startswith("enospc:"):
    import errno
    import pathlib

    import pandas as pd

    _first = int(_spec.split(":")[1])
    _count = [0]

    def _full_disk(path, data: bytes) -> None:
        _count[0] += 1
        if _count[0] >= _first:
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    _to_parquet, _write_text = pd.DataFrame.to_parquet, pathlib.Path.write_text

    def to_parquet(self, path, *args, **kwargs):
        _full_disk(path, b"PAR1" + bytes(200))
        return _to_parquet(self, path, *args, **kwargs)

    def write_text(self, data, *args, **kwargs):
        if self.name.startswith(".summary.json.tmp"):
            _full_disk(self, data.encode())
        return _write_text(self, data, *args, **kwargs)

    pd.DataFrame.to_parquet, pathlib.Path.write_text = to_parquet, write_text


def _when_imported(module_name, patch):
    """Call patch(module) right after `module_name` is first imported (it is not imported yet)."""
    import importlib.abc
    import importlib.util
    import sys

    class _Patch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != module_name:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run_module = spec.loader.exec_module

            def exec_module(module):
                run_module(module)
                patch(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Patch())


# INITLAB_FAULT=die-after-group-fit: a process that trains a stacked group exits (os._exit, as a
# node lost or a job killed by its scheduler) right after training it, before any member is written.
if _spec == "die-after-group-fit":
    def _die_after_fit(module):
        fit = module.GroupTraining.fit

        def fit_then_die(self):
            fit(self)
            os._exit(9)

        module.GroupTraining.fit = fit_then_die

    _when_imported("initlab.group", _die_after_fit)

# INITLAB_FAULT=die-in-write-worker: every process that writes job folders for the vectorized launcher
# (initlab.member_writes) exits at its first chunk, as one the OOM killer took: the launcher writes them.
if _spec == "die-in-write-worker":
    def _die_in_write_worker(module):
        def die(payload):
            os._exit(9)

        # found by name when the launcher sends it to a worker
        die.__module__, die.__qualname__ = module.__name__, "_write_in_worker"
        module._write_in_worker = die

    _when_imported("initlab.member_writes", _die_in_write_worker)
