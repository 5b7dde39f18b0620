"""The vectorized launcher's config, registered with Hydra's ConfigStore (as Hydra's own launcher
plugins do), so `hydra/launcher=vectorized` works from any app, search path or --config-dir."""

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore

# initlab's own keys, their defaults and rules, are declared once there; these entries add Hydra's.
from initlab.config.launcher import InProcessKeys, LocalJobKeys, StackedGroupKeys


@dataclass
class VectorizedLauncherConf(InProcessKeys):
    """Train a multirun's compatible initlab jobs (same architecture, data, batch size and epochs;
    any init, learning rate, optimizer settings and seed) together as stacked models. Every job
    still gets its own folder with the ordinary runner's files; any other task runs as Hydra's
    basic launcher runs it.
      initlab -m hydra/launcher=vectorized init=xavier_uniform,kaiming_normal lr.value=0.1,0.01 trainer.seed=0,1,2
    """

    _target_: str = "hydra_plugins.initlab_vectorized.vectorized_launcher.VectorizedLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf,
                             provider="initlab")


# Stacked groups as submitit jobs (initlab.sweep.cluster): Hydra's submitit settings, plus the group's.
try:
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
except ImportError:  # hydra-submitit-launcher not installed (pip install 'initlab[slurm]')
    LocalQueueConf = SlurmQueueConf = None

if LocalQueueConf is not None:

    @dataclass
    class VectorizedSubmititLocalConf(LocalQueueConf, LocalJobKeys):
        """Each stacked group as a submitit job on this machine (a process each, `parallel_groups` at once).
          initlab -m hydra/launcher=vectorized_submitit_local init=xavier_normal,kaiming_normal trainer.seed=0,1,2
        """

        _target_: str = "hydra_plugins.initlab_vectorized.vectorized_launcher.VectorizedSubmititLocalLauncher"
        timeout_min: float = 60.0  # per group (submitit's local executor takes fractions)
        signal_delay_s: int = 30  # the timeout signal comes this long before the kill
        max_num_timeout: int = 0  # LocalQueueConf's own default is 3 (see initlab.config.launcher)

    @dataclass
    class VectorizedSlurmConf(SlurmQueueConf, StackedGroupKeys):
        """Each stacked group as one task of a SLURM job array, through submitit.
          initlab -m hydra/launcher=vectorized_slurm hydra.launcher.partition=gpu init=... lr.value=... trainer.seed=...
        Every key of Hydra's submitit_slurm works the same way (account, qos, constraint, setup, ...).
        """

        _target_: str = "hydra_plugins.initlab_vectorized.vectorized_launcher.VectorizedSlurmLauncher"
        timeout_min: int = 60  # per group
        gpus_per_node: Optional[int] = 1  # a node with several: one worker per GPU (initlab.sweep.workers)
        cpus_per_task: Optional[int] = 8
        mem_gb: Optional[int] = 64
        array_parallelism: int = 64  # groups running at once
        max_group_size: Optional[int] = 256  # members per group (planned where you submit, which may have no GPU)

    ConfigStore.instance().store(group="hydra/launcher", name="vectorized_submitit_local",
                                 node=VectorizedSubmititLocalConf, provider="initlab")
    ConfigStore.instance().store(group="hydra/launcher", name="vectorized_slurm", node=VectorizedSlurmConf,
                                 provider="initlab")
