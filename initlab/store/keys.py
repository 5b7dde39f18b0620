"""What each config key is for besides its value, in one table: whether it names a sweep job's
folder, belongs to a run's identity, may differ between the members of one stacked group, is
a config group the report groups runs by, and is what the report compares configurations across
(`trails`). Every list those parts read is derived from it.

The folder-name list reaches Hydra through the `initlab_keys` resolver
(conf/config.yaml: hydra.job.config.override_dirname.exclude_keys), registered on import of initlab.
"""

from __future__ import annotations

from typing import NamedTuple

from omegaconf import OmegaConf


class Role(NamedTuple):
    folder: bool  # an override of it names the job's folder (hydra.job.override_dirname)
    identity: bool  # part of summary.json's config_hash: a run that differs in it is another run
    per_member: bool  # the members of one stacked group may differ in it
    grouping: bool  # a config group the report's tables group runs by
    # configurations that differ only in it are compared with the best of them (report/tables.py flag_trailing):
    # the choices of a study (init, bias, learning rate) against a fixed architecture, data and optimizer
    compared: bool = False


KEYS: dict[str, Role] = {
    # the config groups
    "init": Role(folder=True, identity=True, per_member=True, grouping=True, compared=True),
    "bias": Role(folder=True, identity=True, per_member=True, grouping=True, compared=True),
    # a stacked group's layers share their multipliers and learning-rate factors (stacked/models.py)
    "param": Role(folder=True, identity=True, per_member=False, grouping=True, compared=True),
    "model": Role(folder=True, identity=True, per_member=False, grouping=True),
    "lr": Role(folder=True, identity=True, per_member=True, grouping=True, compared=True),
    "optim": Role(folder=True, identity=True, per_member=True, grouping=True),
    "data": Role(folder=True, identity=True, per_member=False, grouping=True),
    "trainer": Role(folder=True, identity=True, per_member=False, grouping=True),
    # the verdict's thresholds: they change the diagnosis, not the training
    "diagnose": Role(folder=True, identity=False, per_member=True, grouping=True),
    "experiment": Role(folder=False, identity=False, per_member=False, grouping=True),
    "hparams_search": Role(folder=False, identity=False, per_member=False, grouping=False),
    # bookkeeping and where records are copied
    "rerun": Role(folder=False, identity=False, per_member=True, grouping=False),
    "logger": Role(folder=False, identity=False, per_member=False, grouping=False),
    # keys within a group that say where or how visibly a run happens, not what it computes
    # (trainer.cuda_graphs: how a CUDA step is launched; the same kernels give identical tables, tests/test_gpu.py)
    "trainer.seed": Role(folder=True, identity=True, per_member=True, grouping=False),
    "trainer.progress": Role(folder=False, identity=False, per_member=False, grouping=False),
    "trainer.cuda_graphs": Role(folder=True, identity=False, per_member=False, grouping=False),
    "data.cache": Role(folder=True, identity=False, per_member=False, grouping=False),
    "data.cache_dir": Role(folder=True, identity=False, per_member=False, grouping=False),
    "data.source.root": Role(folder=True, identity=False, per_member=False, grouping=False),
    "data.source.download": Role(folder=True, identity=False, per_member=False, grouping=False),
}


def having(role: str, value: bool = True) -> tuple[str, ...]:
    """The keys whose `role` is `value`, in the table's order."""
    return tuple(key for key, roles in KEYS.items() if getattr(roles, role) is value)


NOT_IN_FOLDER_NAME = having("folder", False)
NOT_IDENTITY_GROUPS = frozenset(k for k in having("identity", False) if "." not in k)
WHERE_NOT_WHAT = tuple(k for k in having("identity", False) if "." in k)  # also left out of the report's columns
PER_MEMBER_GROUPS = frozenset(k for k in having("per_member") if "." not in k)
PER_MEMBER_KEYS = tuple(k for k in having("per_member") if "." in k)
GROUPS = having("grouping")
COMPARED = having("compared")

_LISTS = {"NOT_IN_FOLDER_NAME": NOT_IN_FOLDER_NAME}


def listed(name: str) -> list:
    """`${initlab_keys:NAME}`: one of the lists above, for a config. A module-level function, so a
    launcher that ships Hydra's state (resolvers included) to its workers pickles it by reference."""
    return list(_LISTS[name])


OmegaConf.register_new_resolver("initlab_keys", listed, replace=True)
