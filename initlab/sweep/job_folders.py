"""A stacked member's job folder, with the files Hydra's run_job writes, at a fraction of its cost.

For each job of a sweep Hydra's `run_job` deep-copies the config twice, copies the hydra node
into HydraConfig, re-configures logging from scratch (a new file handler) and renders three
YAML files with PyYAML's pure-Python emitter. For the members of a stacked group, whose
training is already done, that is most of the per-job cost. `write_member` does the same
steps without the copies and the repeated work:
- the task's config and HydraConfig's config share the job config's nodes instead of copying
  them (the job config is this job's alone, made for it by job_configs);
- `.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml` are byte for byte what run_job writes
  (`OmegaConf.to_yaml`), assembled from the YAML of each top-level part, which `HydraYaml`
  renders once per distinct content (a seed sweep changes 6 of ~250 lines), and each is written
  whole or not at all (whole_files);
- the job log file: the logging config is applied in full for the first job and whenever it
  changes in anything but the file's path; otherwise the file handler is pointed at the new file;
- the same callbacks and the same JobReturn.
tests/test_job_folders.py compares a member's folder, JobReturn and HydraConfig with run_job's
and the YAML with OmegaConf's; tests/test_vectorized.py compares whole sweeps with the basic launcher's.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from hydra import version
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, configure_log, env_override
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, flag_override, open_dict, read_write
from omegaconf._utils import get_omega_conf_dumper

from initlab.store import file_writes

from initlab.store import whole_files
class JobLogs:
    """Job log files: the full logging config once, then only the file handlers re-pointed.

    Hydra's run_job applies `hydra.job_logging` in full for every job (logging.config.dictConfig,
    new handlers). The jobs of a sweep usually differ in nothing but the log file's name: when a
    job's config (unresolved, with the file names left out, and its `hydra.verbose`) is the last
    one's and holds no interpolation, the file handlers are pointed at the new job's files.
    """

    def __init__(self) -> None:
        self.last: Optional[str] = None  # the last config applied in full, file names left out

    def use(self, config: DictConfig, job_logging: Optional[dict], plain: Optional[dict] = None) -> None:
        """Log into the job's files as its config says; `job_logging` is its unresolved
        `hydra.job_logging`, `plain` (optional) the whole config as plain containers."""
        hydra = config.hydra
        if job_logging is None:
            configure_log(None, hydra.verbose)
            self.last = None
            return
        handlers = job_logging.get("handlers") or {}
        files = [name for name, h in handlers.items() if "filename" in h]
        same_but_files = repr(({**job_logging, "handlers": {n: {**h, "filename": None} if n in files else h
                                                             for n, h in handlers.items()}}, hydra.verbose))
        open_files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
        if same_but_files != self.last or "${" in same_but_files or len(open_files) != len(files):
            configure_log(hydra.job_logging, hydra.verbose)
            self.last = same_but_files
            return
        for handler, name in zip(open_files, files):
            filename = resolve_simple(handlers[name]["filename"], plain) if plain is not None else None
            if filename is None:
                filename = str(OmegaConf.select(config, f"hydra.job_logging.handlers.{name}.filename"))
            Path(filename).parent.mkdir(parents=True, exist_ok=True)
            handler.acquire()
            try:
                handler.close()
                handler.baseFilename = os.path.abspath(filename)
                handler.stream = handler._open()
            finally:
                handler.release()


# `${a.b.c}`: an absolute interpolation of a key, nothing else (no resolver, no nesting, no escape).
_SIMPLE_INTERPOLATION = re.compile(r"\$\{([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\}")


def resolve_simple(template: Any, plain: dict) -> Optional[str]:
    """`template` resolved as OmegaConf resolves it, when it only interpolates keys that hold
    plain strings in `plain` (the config as plain containers); otherwise None (ask OmegaConf).
    Hydra's job log file, `${hydra.runtime.output_dir}/${hydra.job.name}.log`, is such a one:
    OmegaConf would parse it with its ANTLR grammar for every job."""
    if not isinstance(template, str) or "\\" in template:
        return None

    def value(match: re.Match) -> str:
        node: Any = plain
        for part in match.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                raise LookupError(part)
            node = node[part]
        if not isinstance(node, str) or "${" in node:
            raise LookupError(match.group(0))
        return node

    try:
        resolved = _SIMPLE_INTERPOLATION.sub(value, template)
    except LookupError:
        return None
    return None if "${" in resolved else resolved


def _dump(container: Any) -> str:
    """YAML exactly as OmegaConf.to_yaml renders a container (its dumper and options)."""
    return yaml.dump(container, default_flow_style=False, allow_unicode=True, sort_keys=False,
                     Dumper=get_omega_conf_dumper())


# Keys a mapping may be split at: short names PyYAML writes on one line (its own rendering of
# the key is used, so a quoted `"on":` stays right).
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


class HydraYaml:
    """OmegaConf.to_yaml of job configs, rendered part by part and each distinct part once.

    A block mapping's YAML is its entries' YAML one after another, each indented by its depth
    alone: `{a: A, b: B}` renders as the lines of `{a: A}` then those of `{b: B}`, and the entry
    `c` of a nested mapping at `a.b` as the lines of `{a: {b: {c: C}}}` without the first two.
    Entries are rendered once per distinct content (repr of the plain container: it tells 1
    from 1.0, True and '1', and a mapping's order). Mappings are split `depth` levels deep; an
    empty one, or one with a key that is not a short plain name, is rendered whole.
    tests/test_job_folders.py compares the result with OmegaConf.to_yaml.
    """

    def __init__(self, depth: int = 3) -> None:
        self.depth = depth
        self.rendered: dict[tuple, str] = {}

    def to_yaml(self, container: Any) -> str:
        if not _splittable(container):
            return _dump(container)
        return self._entries(container, (), self.depth)

    def _entries(self, mapping: dict, path: tuple, depth: int) -> str:
        parts = []
        for key, value in mapping.items():
            if depth > 1 and _splittable(value):
                parts.append(self._entry((*path, key), {"_": 0}).split("\n", 1)[0] + "\n")  # `key:`
                parts.append(self._entries(value, (*path, key), depth - 1))
            else:
                parts.append(self._entry((*path, key), value))
        return "".join(parts)

    def _entry(self, path: tuple, value: Any) -> str:
        """The lines of the entry `path[-1]: value` of the mapping at `path[:-1]`, as in the whole document."""
        if type(value) is int and value != 0:  # a job's number or seed: PyYAML writes str(int), plain
            return self._entry(path, 0)[:-2] + f"{value}\n"
        cache_key = (path, repr(value))
        text = self.rendered.get(cache_key)
        if text is None:
            for key in reversed(path):
                value = {key: value}
            text = _dump(value)
            for _ in path[:-1]:  # the enclosing keys' lines (one each), written by the caller
                text = text.split("\n", 1)[1]
            self.rendered[cache_key] = text
        return text


def _splittable(container: Any) -> bool:
    return (isinstance(container, dict) and bool(container)
            and all(isinstance(k, str) and _PLAIN_KEY.match(k) for k in container))


def watches_jobs(callbacks) -> bool:
    """Whether any registered Hydra callback does something when a job starts or ends (it may
    read the job's files then, so they must be on disk before it is called)."""
    return any(type(cb).on_job_start is not Callback.on_job_start or type(cb).on_job_end is not Callback.on_job_end
               for cb in getattr(callbacks, "callbacks", []))


def sharing(config: DictConfig, keys: list[str]) -> DictConfig:
    """A DictConfig whose entries are `config`'s nodes at `keys` themselves, not copies of them.

    The nodes' parent becomes the new config, so their interpolations resolve within it; the
    root's flags (struct, readonly) are the original's. For a config that is one job's alone.
    """
    shared = DictConfig({})
    with flag_override(shared, ["no_deepcopy_set_nodes", "struct", "readonly"], [True, False, False]):
        for key in keys:
            shared[key] = config._get_node(key)
    for flag, value in config._metadata.flags.items():
        shared._set_flag(flag, value)
    return shared


def set_hydra_config(config: DictConfig) -> None:
    """HydraConfig.set_config without its copy of the hydra node: HydraConfig's config holds the
    job config's own (read-only) hydra node, whose interpolations resolve against the whole job
    config, as set_config arranges for its copy."""
    OmegaConf.set_readonly(config.hydra, True)
    hydra_cfg = sharing(config, ["hydra"])
    config.hydra._set_parent(config)
    HydraConfig.instance().cfg = hydra_cfg  # type: ignore[assignment]


def begin_job(config: DictConfig, output_dir: Optional[str] = None, job_dir_key: str = "hydra.sweep.dir",
              job_subdir_key: Optional[str] = "hydra.sweep.subdir") -> tuple[JobReturn, str]:
    """run_job's steps before the job's files, without its copies: `config.hydra` is HydraConfig's
    config (the caller restores the one before), the job's folder is resolved (unless the caller
    knows it) and set as hydra.runtime.output_dir, and the JobReturn holds the task's config,
    HydraConfig's, the overrides, where the job works and the task's name (its status and value
    are the task's to give). write_member begins with it, and so does the vectorized launcher for
    a member a worker process wrote (member_writes.py). The JobReturn, and the job's folder."""
    set_hydra_config(config)
    if output_dir is None:
        output_dir = str(OmegaConf.select(config, job_dir_key))
        if job_subdir_key is not None:
            output_dir = os.path.join(output_dir, str(OmegaConf.select(config, job_subdir_key)))
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = os.path.abspath(output_dir)
    task_cfg = sharing(config, [key for key in config if key != "hydra"])
    ret = JobReturn(overrides=list(OmegaConf.to_container(config.hydra.overrides.task)), cfg=task_cfg,
                    hydra_cfg=HydraConfig.instance().cfg)
    ret.working_dir = output_dir if chdir_of(config) else os.getcwd()
    ret.task_name = JobRuntime.instance().get("name")
    return ret, output_dir


def chdir_of(config: DictConfig) -> bool:
    """Whether the job runs in its folder, as run_job decides it."""
    chdir = config.hydra.job.chdir
    return not version.base_at_least("1.2") if chdir is None else bool(chdir)


def write_member(config: DictConfig, task: Callable[[DictConfig], Any], callbacks, logs: JobLogs,
                 files: HydraYaml, job_dir_key: str = "hydra.sweep.dir",
                 job_subdir_key: str = "hydra.sweep.subdir", output_dir: Optional[str] = None,
                 plain: Optional[Callable[[DictConfig], Optional[dict]]] = None) -> JobReturn:
    """What hydra.core.utils.run_job does for one job, in the same order.

    `config` is the job's own (job_configs made it for this job): the task's config and
    HydraConfig's share its nodes instead of copying them, as run_job copies them.
    `output_dir`, when the caller has resolved the job's folder already, saves resolving it again;
    `plain(config)`, when it knows, gives OmegaConf.to_container(config, resolve=False,
    enum_to_str=True) at less cost (job_configs.SweepConfigs.plain).
    """
    previous, old_cwd = HydraConfig.instance().cfg, os.getcwd()
    try:
        ret, output_dir = begin_job(config, output_dir, job_dir_key, job_subdir_key)
        task_cfg, hydra = ret.cfg, config.hydra
        known = plain(config) if plain is not None else None
        as_plain = known if known is not None else OmegaConf.to_container(config, resolve=False, enum_to_str=True)
        hydra_plain = {"hydra": as_plain.pop("hydra")}
        overrides = hydra_plain["hydra"]["overrides"]["task"]
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        if chdir_of(config):
            os.chdir(output_dir)
        logs.use(config, hydra_plain["hydra"]["job_logging"], {**as_plain, **hydra_plain})
        if hydra.output_subdir is not None:
            hydra_output = Path(hydra.runtime.output_dir) / str(hydra.output_subdir)
            hydra_output.mkdir(parents=True, exist_ok=True)
            for name, container in (("config.yaml", as_plain), ("hydra.yaml", hydra_plain), ("overrides.yaml", overrides)):
                text, path = files.to_yaml(container), hydra_output / name
                # whole or not at all (run_job writes them in place: a kill mid-write left half a YAML)
                data = text.encode("utf-8")
                file_writes.write(lambda path=path, data=data: whole_files.write(path, lambda f: f.write(data)))
        with env_override(hydra.job.env_set):
            callbacks.on_job_start(config=config, task_function=task)
            try:
                ret.return_value = task(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as e:
                ret.return_value, ret.status = e, JobStatus.FAILED
        for handler in logging.getLogger().handlers:
            handler.flush()
        callbacks.on_job_end(config=config, job_return=ret)
        return ret
    finally:
        HydraConfig.instance().cfg = previous
        os.chdir(old_cwd)
