"""Hydra's entry to initlab's vectorized launcher. Hydra finds launchers in the hydra_plugins
namespace; this module stays light (no torch) because Hydra imports every plugin at start-up.
The logic is in initlab.vectorized; the config in config.py beside this file."""

from typing import Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class VectorizedLauncher(Launcher):
    """Train a multirun's compatible initlab jobs together as stacked models (initlab.vectorized)."""

    def __init__(self, max_group_size: Optional[int] = None, memory_fraction: float = 0.5) -> None:
        self.max_group_size, self.memory_fraction = max_group_size, memory_fraction
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        if getattr(task_function, "__module__", None) == "initlab.cli":
            from initlab.vectorized import fast_composition

            # The sweeper checks the batch with the same loader before launch(): both get the fast path.
            fast_composition(hydra_context, task_function)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from initlab import vectorized

        return vectorized.launch(self, job_overrides, initial_job_idx)
