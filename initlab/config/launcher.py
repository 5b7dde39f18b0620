"""The vectorized launchers' own keys, declared once: each key's default and the rule its value must
pass. Hydra's ConfigStore entries (hydra_plugins/initlab_vectorized/config.py) inherit these
dataclasses, and the check of hydra.launcher (check.check_launcher) reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from initlab.config.schema import AT_LEAST_ONE, DECAY, DEVICE, NON_NEGATIVE, Schema, rule


@dataclass
class StackedGroupKeys(Schema):
    """Every vectorized launcher's keys: how large a stacked group is, who writes its job folders."""

    max_group_size: Optional[int] = field(default=None, metadata=rule(
        AT_LEAST_ONE["ok"], "an integer >= 1, or null (as many as memory_fraction of the device's free memory holds)"))
    memory_fraction: float = field(default=0.5, metadata=rule(
        DECAY["ok"], "a number in (0, 1]: the share of the device's free memory a group may take"))
    write_workers: Optional[int] = field(default=None, metadata=rule(
        NON_NEGATIVE["ok"], "an integer >= 0 (0: the launcher writes the folders itself), or null (one per core "
                          "but one, at most 16)"))  # processes writing a finished group's job folders at once


@dataclass
class InProcessKeys(StackedGroupKeys):
    """hydra/launcher=vectorized: the groups train in this process, one worker per device."""

    # Devices that train groups at once, one worker each (e.g. [cuda:0, cuda:1]); null: every
    # visible GPU when trainer.device is auto or cuda, else the one device trainer.device names.
    devices: Optional[List[str]] = field(default=None, metadata=rule(
        lambda v: all(DEVICE["ok"](d) for d in v), f"a list of {DEVICE['allowed']}, or null"))


@dataclass
class LocalJobKeys(StackedGroupKeys):
    """hydra/launcher=vectorized_submitit_local: each group a submitit job on this machine."""

    parallel_groups: int = field(default=1, metadata=rule(
        AT_LEAST_ONE["ok"], "an integer >= 1: groups training at once"))  # one process each
    # 0, as Hydra's submitit_slurm (submitit's LocalExecutor alone requeues 3 times, each a whole new attempt)
    max_num_timeout: int = field(default=0, metadata=rule(
        NON_NEGATIVE["ok"], "an integer >= 0: how many times submitit requeues a group past its time limit"))


@dataclass
class VectorizedLauncher(InProcessKeys, LocalJobKeys):
    """Every key any vectorized launcher has: what check.check_launcher checks on hydra.launcher
    (a submitit key is for sbatch or submitit to refuse)."""
