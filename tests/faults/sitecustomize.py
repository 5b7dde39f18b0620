"""Fault injection for tests that start initlab as a subprocess (PYTHONPATH=tests/faults).

INITLAB_FAULT names one fault (each is described where it is made, below); without it nothing
is changed.
"""

import os

_spec = os.environ.get("INITLAB_FAULT", "")


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


# INITLAB_FAULT=enospc:K: the K-th write of a run's records and every later one fill half the file,
# then fail with ENOSPC, inside records._atomic (whatever file it writes into: nameless or named).
if _spec.startswith("enospc:"):
    _first, _count = int(_spec.split(":")[1]), [0]

    def _on_a_full_disk(module):
        atomic = module._atomic

        def atomic_on_a_full_disk(path, write):
            if path.name not in (module.SUMMARY, module.LAYERS, module.CURVES):
                return atomic(path, write)

            def write_until_full(f):
                _count[0] += 1
                if _count[0] < _first:
                    return write(f)
                import errno
                import io
                whole = io.BytesIO()
                write(whole)
                f.write(whole.getvalue()[: len(whole.getvalue()) // 2])
                f.flush()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

            return atomic(path, write_until_full)

        module._atomic = atomic_on_a_full_disk

    _when_imported("initlab.store.records", _on_a_full_disk)

# INITLAB_FAULT=die-after-group-fit: a process that trains a stacked group exits (os._exit, as a
# node lost or a job killed by its scheduler) right after training it, before any member is written.
if _spec == "die-after-group-fit":
    def _die_after_fit(module):
        fit = module.GroupTraining.fit

        def fit_then_die(self):
            fit(self)
            os._exit(9)

        module.GroupTraining.fit = fit_then_die

    _when_imported("initlab.stacked.group", _die_after_fit)

# INITLAB_FAULT=die-in-write-worker: every process that writes job folders for the vectorized launcher
# (initlab.sweep.member_writes) exits at its first chunk, as one the OOM killer took: the launcher writes them.
if _spec == "die-in-write-worker":
    def _die_in_write_worker(module):
        def die(payload):
            os._exit(9)

        # found by name when the launcher sends it to a worker
        die.__module__, die.__qualname__ = module.__name__, "_write_in_worker"
        module._write_in_worker = die

    _when_imported("initlab.sweep.member_writes", _die_in_write_worker)
