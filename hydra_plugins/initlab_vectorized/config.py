"""The vectorized launcher's config, registered with Hydra's ConfigStore (as Hydra's own launcher
plugins do), so `hydra/launcher=vectorized` works from any app, search path or --config-dir."""

from dataclasses import dataclass
from typing import List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class VectorizedLauncherConf:
    """Train a multirun's compatible initlab jobs (same architecture, data, batch size and epochs;
    any init, learning rate, optimizer settings and seed) together as stacked models. Every job
    still gets its own folder with the ordinary runner's files; any other task runs as Hydra's
    basic launcher runs it.
      initlab -m hydra/launcher=vectorized init=xavier_uniform,kaiming_normal lr.value=0.1,0.01 trainer.seed=0,1,2
    """

    _target_: str = "hydra_plugins.initlab_vectorized.vectorized_launcher.VectorizedLauncher"
    max_group_size: Optional[int] = None  # members per stacked group; None: as many as memory_fraction allows
    memory_fraction: float = 0.5  # of the device's free memory a group may take
    # Devices that train groups at once, one worker each (e.g. [cuda:0, cuda:1]); None: every
    # visible GPU when trainer.device is auto or cuda, else the one device trainer.device names.
    devices: Optional[List[str]] = None
    # Processes that write a finished group's job folders at once (initlab.sweep.member_writes); None: one
    # per core but one, at most 16 (none below 4 cores); 0: the launcher writes them itself.
    write_workers: Optional[int] = None


ConfigStore.instance().store(group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf,
                             provider="initlab")


# Stacked groups as submitit jobs (initlab.sweep.cluster): Hydra's submitit settings, plus the group's.
try:
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
except ImportError:  # hydra-submitit-launcher not installed (pip install 'initlab[slurm]')
    LocalQueueConf = SlurmQueueConf = None

if LocalQueueConf is not None:

    @dataclass
    class VectorizedSubmititLocalConf(LocalQueueConf):
        """Each stacked group as a submitit job on this machine (a process each, `parallel_groups` at once).
          initlab -m hydra/launcher=vectorized_submitit_local init=xavier_normal,kaiming_normal trainer.seed=0,1,2
        """

        _target_: str = "hydra_plugins.initlab_vectorized.vectorized_launcher.VectorizedSubmititLocalLauncher"
        timeout_min: float = 60.0  # per group (submitit's local executor takes fractions)
        signal_delay_s: int = 30  # the timeout signal comes this long before the kill
        # times a group past its time limit is requeued: 0, as Hydra's submitit_slurm (submitit's
        # LocalExecutor alone requeues 3 times, each a whole new attempt at the group)
        max_num_timeout: int = 0
        max_group_size: Optional[int] = None  # members per group; None: as many as memory_fraction allows
        memory_fraction: float = 0.5
        parallel_groups: int = 1  # groups training at once (one process each)
        write_workers: Optional[int] = None  # processes writing a group's job folders (None: one per core but one, at most 16)

    @dataclass
    class VectorizedSlurmConf(SlurmQueueConf):
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
        memory_fraction: float = 0.5
        write_workers: Optional[int] = None  # processes writing a group's job folders (None: one per core of the task but one, at most 16)

    ConfigStore.instance().store(group="hydra/launcher", name="vectorized_submitit_local",
                                 node=VectorizedSubmititLocalConf, provider="initlab")
    ConfigStore.instance().store(group="hydra/launcher", name="vectorized_slurm", node=VectorizedSlurmConf,
                                 provider="initlab")
