"""Hydra's entry to initlab's vectorized launcher. Hydra finds launchers in the hydra_plugins
namespace; this module stays light (no torch) because Hydra imports every plugin at start-up.
The logic is in initlab.sweep (entry.py, vectorized.py, cluster.py); the config in config.py beside this file."""

from typing import Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


def _fast_composition(hydra_context: HydraContext, task_function: TaskFunction, validate_only: bool = False) -> None:
    """For initlab's training task (initlab not imported otherwise: this module stays light), the
    sweeper's check of the batch and the launcher's plan derive the job configs from one
    composition per set of group choices (initlab.sweep.entry.fast_composition)."""
    if getattr(task_function, "__module__", None) == "initlab.cli":
        from initlab.sweep.entry import fast_composition

        fast_composition(hydra_context, task_function, validate_only)


class VectorizedLauncher(Launcher):
    """Train a multirun's compatible initlab jobs together as stacked models (initlab.sweep.vectorized)."""

    def __init__(self, max_group_size: Optional[int] = None, memory_fraction: float = 0.5,
                 devices: Optional[Sequence[str]] = None, write_workers: Optional[int] = None) -> None:
        self.max_group_size, self.memory_fraction = max_group_size, memory_fraction
        self.devices = list(devices) if devices else None
        self.write_workers = write_workers
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        _fast_composition(hydra_context, task_function)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from initlab.sweep import entry
        return entry.launch(self, job_overrides, initial_job_idx)


try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
except ImportError:  # hydra-submitit-launcher not installed (pip install 'initlab[slurm]')
    BaseSubmititLauncher = None

if BaseSubmititLauncher is not None:

    class VectorizedSubmititLauncher(BaseSubmititLauncher):
        """Each stacked group of initlab jobs as one submitit job (initlab.sweep.cluster); any other task as
        Hydra's submitit launcher runs it (one submitit job per Hydra job)."""

        def __init__(self, max_group_size: Optional[int] = None, memory_fraction: float = 0.5,
                     parallel_groups: int = 1, write_workers: Optional[int] = None, **params) -> None:
            super().__init__(**params)
            self.max_group_size, self.memory_fraction = max_group_size, memory_fraction
            self.parallel_groups, self.devices, self.write_workers = parallel_groups, None, write_workers

        def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
            super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
            # each group's job derives its own configs too (cluster.py): this process keeps none
            _fast_composition(hydra_context, task_function, validate_only=True)

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            from initlab.sweep.entry import is_initlab_training

            if not is_initlab_training(self.task_function):
                return self._as_hydra_submitit(job_overrides, initial_job_idx)
            from initlab.sweep import cluster
            return cluster.launch(self, job_overrides, initial_job_idx)

        def _as_hydra_submitit(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            """Hydra's submitit launcher, with the settings its executor takes (whole minutes; no local
            signal delay, which only submitit's LocalExecutor itself knows)."""
            import math

            saved = self.params
            self.params = {k: v for k, v in saved.items() if not (self._EXECUTOR == "local" and k == "signal_delay_s")}
            self.params["timeout_min"] = max(1, math.ceil(saved["timeout_min"]))
            try:
                return super().launch(job_overrides, initial_job_idx)
            finally:
                self.params = saved

    class VectorizedSubmititLocalLauncher(VectorizedSubmititLauncher):
        _EXECUTOR = "local"

    class VectorizedSlurmLauncher(VectorizedSubmititLauncher):
        _EXECUTOR = "slurm"
