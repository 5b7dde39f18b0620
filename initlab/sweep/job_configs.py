"""A multirun's job configs at the cost of one Hydra composition per distinct set of group choices.

Hydra composes every job of a sweep from scratch (~50 ms each here), and with the basic sweeper
twice: once to check the batch, once in the launcher. Jobs that pick the same config-group
options (init=..., model=...) and differ only in values (lr.value=..., trainer.seed=...) share
everything a composition computes except those values. `SweepConfigs` wraps Hydra's config
loader (the vectorized launcher installs it for initlab's own task): the first job of each
distinct set of choices is composed as usual; every later one is a copy of it (unpickled:
a fifth of the time of a deep copy of the same DictConfig) with its own value overrides applied by Hydra's own code (`ConfigLoaderImpl._apply_overrides_to_config`)
and the fields composition derives from the overrides (`hydra.overrides.task`,
`hydra.job.override_dirname`) set as Hydra sets them. Anything else (a deletion `~key`, an
addition `+key`, a package override, a dict value, a hydra override) is composed in full.
The launcher also takes from it what it needs of each job before training: its settings (the
base's resolved task keys, with the keys the job's values set resolved anew) and its folder name.
tests/test_sweep_configs.py checks all three against full composition, validate() and Hydra's
resolution.
"""

from __future__ import annotations

import pickle
import re
from typing import Any, Optional

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from initlab.config.check import ConfigError, resolved


class SweepConfigs:
    """A Hydra ConfigLoader whose `load_sweep_config` composes once per distinct set of group choices."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self.parser = OverridesParser.create()
        self.groups: set[str] = set()  # config groups seen in a composed job (hydra.runtime.choices)
        self.bases: dict[tuple, bytes] = {}  # pristine composed job per signature, pickled
        self.composed = 0  # full compositions done (for the benchmark and the tests)
        # Results handed out once (the sweeper's check), to be handed out once more (the launcher's
        # jobs). All of them: the launcher holds every job's config after its plan anyway, so a cap
        # only made it derive the configs past the cap a second time (5,900 of a 10,000-job study).
        self.checked: dict[tuple, DictConfig] = {}
        # True (the cluster launchers): the sweeper's check keeps nothing for the launcher, which holds no
        # job config past its plan either; a derivable job is checked and planned on a scratch copy (`scratch`).
        self.validate_only = False
        self.scratches: dict[tuple, DictConfig] = {}  # per signature: one copy of the base (`scratch`)
        self.parsed: dict[str, Override] = {}  # each override string parsed once (a grid repeats them)
        self.plains: dict[tuple, dict] = {}  # the base's plain container per signature, made when first asked
        self.derived: dict[int, tuple[tuple, set[str]]] = {}  # id(job config) -> (signature, top-level keys set)
        self.resolved_bases: dict[tuple, Optional[dict]] = {}  # the base's task keys resolved, per signature (settings)
        self.subdirs: dict[tuple, Any] = {}  # the base's hydra.sweep.subdir, unresolved, per signature
        self.base_configs: dict[tuple, DictConfig] = {}  # the bases unpickled, for reading only (_base)

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (unpickling): not the wrapped loader's either
            raise AttributeError(name)
        return getattr(self.loader, name)  # everything else is the wrapped loader's

    def __getstate__(self) -> dict:
        """What another process gets (the launcher goes to each submitit job with its loader): the
        wrapped loader and the config groups. The bases a job needs go with it (`bases_of`,
        cluster_job.GroupTask), not every base of the sweep; the caches are made anew there."""
        return {"loader": self.loader, "groups": self.groups}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["loader"])
        self.groups = state["groups"]

    def bases_of(self, signatures: list[Optional[tuple]]) -> dict[tuple, bytes]:
        """The pickled bases from which jobs derive, given their signatures (`recipe`, noted while
        their configs were alive): given them (`add_bases`), a loader in another process derives those
        jobs' configs as this one did instead of composing each in full (~80 ms a job)."""
        return {signature: self.bases[signature] for signature in set(signatures) - {None}}

    def add_bases(self, bases: dict[tuple, bytes]) -> None:
        self.bases.update(bases)

    def _compose(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        self.composed += 1
        config = self.loader.load_sweep_config(master_config, sweep_overrides)
        self.groups |= set(config.hydra.runtime.choices.keys())
        return config

    def _signature(self, parsed: list[Override]) -> tuple | None:
        """What two jobs must share for one to be derived from the other, or None: compose in full."""
        if not self.groups:
            return None
        for o in parsed:
            if (o.is_delete() or o.is_add() or o.is_force_add() or o.package is not None or o.is_hydra_override()
                    or o.is_sweep_override() or isinstance(o.value(), dict)):
                return None
        keys = tuple(o.key_or_group for o in parsed)
        return keys, tuple(o.input_line for o in parsed if o.key_or_group in self.groups)

    def _parse(self, overrides: list[str]) -> list[Override]:
        """Hydra's parse of each override string (its grammar costs ~0.3 ms a string); the Override
        objects are only read afterwards, so jobs share them."""
        new = [o for o in dict.fromkeys(overrides) if o not in self.parsed]
        if new:
            self.parsed.update(zip(new, self.parser.parse_overrides(new)))
        return [self.parsed[o] for o in overrides]

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """Hydra's ConfigLoader call. The basic sweeper makes it for every job to check its batch and
        keeps nothing of the result: the result is kept for the launcher's `for_launch` of that job."""
        if self.validate_only:  # (the sweeper discards what it gets)
            scratch = self.scratch(master_config, sweep_overrides)
            if scratch is not None:
                self.forget(scratch)
                return scratch
        config = self._load(master_config, sweep_overrides)
        if self.validate_only:
            self.forget(config)  # (composed in full: the sweeper lets it go)
        else:
            self.checked[tuple(sweep_overrides)] = config
        return config

    def scratch(self, master_config: DictConfig, sweep_overrides: list[str]) -> Optional[DictConfig]:
        """The config `derive` would make for a job, made on one scratch copy of its base per signature
        (set_overrides): it raises what deriving would raise, and settings(), subdir() and recipe() read
        it as a derived config, without the unpickling and the freeing of a config per job (~2 ms, most
        of planning a 10,000-job study on a cluster). Valid until the next call for the same signature:
        for reading only, by a launcher that keeps no job config (validate_only). None for a job that
        is composed in full."""
        parsed = self._parse(list(sweep_overrides))
        signature = self._signature(parsed)
        if signature is None or signature not in self.bases:
            return None
        scratch = self.scratches.get(signature)
        if scratch is None:
            scratch = self.scratches[signature] = pickle.loads(self.bases[signature])
            OmegaConf.copy_cache(from_config=master_config, to_config=scratch)
        set_overrides(scratch, self.bases[signature], parsed, self.groups)
        self._note_derived(scratch, signature, parsed)
        return scratch

    def for_launch(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """The job's config for the launcher, which owns it: the one the sweeper's check made, or a new one."""
        config = self.checked.pop(tuple(sweep_overrides), None)
        return config if config is not None else self._load(master_config, sweep_overrides)

    def _load(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        parsed = self._parse(list(sweep_overrides))
        signature = self._signature(parsed)
        if signature is None or signature not in self.bases:
            config = self._compose(master_config, list(sweep_overrides))
            self.derived.pop(id(config), None)  # an id once held by a config gone since
            signature = self._signature(parsed)  # the groups are known now
            if signature is not None:
                self.bases[signature] = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
                self.derived[id(config)] = signature, set()
            return config
        config = derive(self.bases[signature], master_config, parsed, self.groups)
        self._note_derived(config, signature, parsed)
        return config

    def _note_derived(self, config: DictConfig, signature: tuple, parsed: list[Override]) -> None:
        """What recipe(), plain() and settings() read of a config made from a base: its signature and the
        top-level keys its value overrides set."""
        self.derived[id(config)] = signature, {o.key_or_group.split(".")[0] for o in parsed
                                               if o.key_or_group not in self.groups}

    def recipe(self, config: DictConfig) -> Optional[tuple]:
        """The signature from whose base `derive` makes `config` again (given its overrides), or None
        for a config this loader did not make or composed without one (member_writes.py)."""
        entry = self.derived.get(id(config))
        return None if entry is None else entry[0]

    def plain(self, config: DictConfig) -> Optional[dict]:
        """OmegaConf.to_container(config, resolve=False, enum_to_str=True) of a job config this
        loader made, assembled from its base's (made once per signature): the top-level keys its
        value overrides set, and `hydra.job`, `hydra.runtime`, `hydra.overrides` (which composition
        and the launcher set per job), are converted anew; every other part is the base's, shared
        and not to be changed. None for a config it did not make."""
        entry = self.derived.get(id(config))
        if entry is None:
            return None
        signature, changed = entry
        if signature not in self.plains:
            self.plains[signature] = _plain(self._base(signature))
        base = self.plains[signature]
        plain = {**base, **{key: _plain(config[key]) for key in changed}}
        plain["hydra"] = {**base["hydra"], **{key: _plain(config.hydra[key]) for key in ("job", "runtime", "overrides")}}
        return plain

    def settings(self, config: DictConfig) -> Optional[dict]:
        """config.resolved(config, its task keys) (what config.validate checks) of a job config this
        loader derived, at less cost: the top-level keys its value overrides set are resolved anew,
        every other one is a copy of its base's, resolved once per signature. None for a config it did
        not derive, or when its base's task keys hold an interpolation that reads another node (one
        of those could read a value that differs from job to job): then validate() resolves it all."""
        entry = self.derived.get(id(config))
        if entry is None:
            return None
        signature, changed = entry
        if signature not in self.resolved_bases:
            self.resolved_bases[signature] = _resolved_alone(self._base(signature))
        base = self.resolved_bases[signature]
        if base is None:
            return None
        fresh = resolved(config, [key for key in base if key in changed])
        return {key: fresh[key] if key in changed else _copy(value) for key, value in base.items()}

    def subdir(self, config: DictConfig) -> Optional[str]:
        """OmegaConf.select(config, "hydra.sweep.subdir") of a job config this loader derived, when it
        is initlab's own ${initlab_job:${hydra.job.override_dirname}} (conf/hydra/output/initlab.yaml):
        job_dirname of the override_dirname `derive` set, without the interpolation grammar (a
        quarter of a millisecond a job). None otherwise: resolve it."""
        entry = self.derived.get(id(config))
        if entry is None:
            return None
        signature = entry[0]
        if signature not in self.subdirs:
            self.subdirs[signature] = OmegaConf.to_container(self._base(signature).hydra.sweep, resolve=False).get("subdir")
        if self.subdirs[signature] != JOB_SUBDIR:
            return None
        from initlab.sweep.job_names import job_dirname

        return job_dirname(config.hydra.job.override_dirname)

    def _base(self, signature: tuple) -> DictConfig:
        """The base of a signature, unpickled once for what plain(), settings() and subdir() read of it
        (none of them changes it)."""
        if signature not in self.base_configs:
            self.base_configs[signature] = pickle.loads(self.bases[signature])
        return self.base_configs[signature]

    def forget(self, config: DictConfig) -> None:
        """Drop what `plain` keeps about a job config (once its folder is written)."""
        self.derived.pop(id(config), None)


def derive(base: bytes, master_config: DictConfig, parsed: list[Override], groups: set[str]) -> DictConfig:
    """A job's config from its signature's base (pickled) and its parsed overrides: the base's copy
    with the value overrides applied by Hydra's own code, and what composition derives from the
    overrides set as it sets it. The same config, derived again anywhere (a write process), is
    the same: tests/test_member_writes.py compares the files written from either."""
    config = pickle.loads(base)
    set_overrides(config, base, parsed, groups)
    OmegaConf.copy_cache(from_config=master_config, to_config=config)
    return config


def set_overrides(config: DictConfig, base: bytes, parsed: list[Override], groups: set[str]) -> None:
    """What `derive` does to its copy of `base` (pickled): the value overrides applied by Hydra's own
    code, and hydra.overrides.task and hydra.job.override_dirname set as composition sets them.
    On a copy that the same-signature overrides of another job were set on (SweepConfigs.scratch), it
    makes the same config: they set the same keys in the same order, so each replaces the last."""
    ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if o.key_or_group not in groups], config)
    hydra = config.hydra
    task = hydra.overrides.task
    if len(task) == len(parsed):  # (it is: the base's overrides set the same keys) each line in place
        for i, o in enumerate(parsed):  # a new list would be a new ListConfig, element by element
            if task[i] != o.input_line:
                task[i] = o.input_line
    else:
        hydra.overrides.task = [o.input_line for o in parsed]
    kv_sep, item_sep, exclude_keys = _dirname_settings(base, hydra.job)
    # (both keys exist: assigned as composition assigns them, without open_dict's walk over the node)
    hydra.job.override_dirname = get_overrides_dirname(overrides=parsed, kv_sep=kv_sep, item_sep=item_sep,
                                                       exclude_keys=exclude_keys)


_DIRNAME_SETTINGS: dict[bytes, tuple[str, str, list[str]]] = {}


def _dirname_settings(base: bytes, job: DictConfig) -> tuple[str, str, list[str]]:
    """hydra.job.config.override_dirname's kv_sep, item_sep and exclude_keys, read once per base
    (three OmegaConf reads cost a twentieth of a derive); `job` is a config derived from it."""
    found = _DIRNAME_SETTINGS.get(base)
    if found is None:
        settings = job.config.override_dirname
        found = _DIRNAME_SETTINGS[base] = (settings.kv_sep, settings.item_sep, list(settings.exclude_keys))
    return found


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=False, enum_to_str=True) if OmegaConf.is_config(node) else node


JOB_SUBDIR = "${initlab_job:${hydra.job.override_dirname}}"  # hydra.sweep.subdir in conf/hydra/output/initlab.yaml

# An interpolation that reads no node: an environment variable with a literal default.
_ALONE = re.compile(r"\$\{oc\.env:[^${}\\]*\}")


def _resolved_alone(base: DictConfig) -> Optional[dict]:
    """The task keys of `base` resolved, when no interpolation among them reads another node (only
    ${oc.env:...} with literal arguments); else None, as when one does not resolve."""
    keys = [key for key in base if key != "hydra"]
    if any("${" in _ALONE.sub("", text) or "\\" in text for text in _strings({k: _plain(base[k]) for k in keys})):
        return None
    try:
        return resolved(base, keys)
    except ConfigError:
        return None


def _strings(node: Any):
    """Every string in a plain container (keys too)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str):
                yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def _copy(node: Any) -> Any:
    """A copy of a plain container (dicts and lists copied, values shared: they are immutable)."""
    if isinstance(node, dict):
        return {key: _copy(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_copy(value) for value in node]
    return node
