"""Hydra's way into the vectorized launchers (hydra_plugins/initlab_vectorized calls these): which
task is initlab's training, the shared compositions of its sweep, and a batch's launch."""

from __future__ import annotations

from typing import Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn

from initlab.sweep.fewer_collections import COLLECTIONS
from initlab.sweep.job_configs import SweepConfigs
from initlab.sweep.vectorized import VectorizedSweep


def is_initlab_training(task) -> bool:
    """Whether a Hydra task function is initlab's training job (initlab.cli.train_job).

    Named, not imported: importing initlab.cli runs its @hydra.main, which sets Hydra's global
    version_base and would change how another app's jobs run (their working directory).
    """
    return getattr(task, "__module__", None) == "initlab.cli" and getattr(task, "__qualname__", None) == "train_job"


def fast_composition(hydra_context, task_function, validate_only: bool = False) -> None:
    """For initlab's training task, let the sweep's job configs share compositions (job_configs.py),
    and collect garbage less often until launch() ends (FewerCollections). `validate_only`: for a
    launcher that holds no job config past its plan (the cluster launchers, cluster.py)."""
    if is_initlab_training(task_function):
        if not isinstance(hydra_context.config_loader, SweepConfigs):
            hydra_context.config_loader = SweepConfigs(hydra_context.config_loader)
        hydra_context.config_loader.validate_only = validate_only
        COLLECTIONS.start()


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
    """Run a batch of jobs for the Hydra launcher `launcher` (hydra_plugins/initlab_vectorized).

    initlab's own training jobs are grouped and trained as stacked models, and each group's
    job folders are written as soon as that group finishes, so a kill loses at most the group
    in flight. Any other task, and a group of one, runs exactly as Hydra's basic launcher runs it.
    """
    if not is_initlab_training(launcher.task_function):
        basic = BasicLauncher()
        basic.setup(hydra_context=launcher.hydra_context, task_function=launcher.task_function, config=launcher.config)
        return basic.launch(job_overrides, initial_job_idx)
    COLLECTIONS.start()  # a later batch of the same sweep (setup() started it for the first)
    try:
        return VectorizedSweep(launcher).run(job_overrides, initial_job_idx)
    finally:
        COLLECTIONS.stop()
