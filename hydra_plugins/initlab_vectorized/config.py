"""The vectorized launcher's config, registered with Hydra's ConfigStore (as Hydra's own launcher
plugins do), so `hydra/launcher=vectorized` works from any app, search path or --config-dir."""

from dataclasses import dataclass
from typing import Optional

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


ConfigStore.instance().store(group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf,
                             provider="initlab")
