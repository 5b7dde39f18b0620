"""Checks every composed config against the typed schema (schema.py) before anything trains.

Each YAML option in ``conf/<group>/`` names the arguments of the callable in its
``_target_``, and that callable's signature is the schema (initlab's, torch's, torchvision's or the
user's function); the groups that name no callable (data, trainer, diagnose) have a dataclass in
schema.py that says what type and range each key may take. A config that breaks the schema
stops with one line, for example::

    lr.value=-0.1: must be a number > 0

We check after Hydra composes instead of registering these dataclasses in Hydra's
ConfigStore: ConfigStore validation errors span several lines, stop with exit code 1, and
the schema entries show up as choices in Hydra's "Available options" lists.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import MISSING, dataclass, fields
import types
from typing import Any, Callable, Mapping

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from initlab.config.errors import ConfigError  # defined apart: the report and loggers raise it without torch
from initlab.config.targets import locate, show
from initlab.config.launcher import VectorizedLauncher
from initlab.config.schema import AUTO, AUTO_KEYS, CRITICAL, ANY, FIXED, SIGNED, Schema, Signed


# --- the keys a node may have: from a schema dataclass or from a function's signature ---------


@dataclass
class Key:
    """One setting: its name, type (without Annotated), rule, and whether the YAML must give it."""

    name: str
    type: Any
    rule: dict
    required: bool
    default: Any = None


def _split_annotated(tp: Any) -> tuple[Any, dict]:
    """(type, rule) of an annotation; the rule rides on Annotated[type, rule] (schema.rule)."""
    if typing.get_origin(tp) is typing.Annotated:
        base, *extras = typing.get_args(tp)
        rules = [e for e in extras if isinstance(e, dict) and "ok" in e]
        return base, rules[0] if rules else ANY
    return tp, ANY


@functools.lru_cache(maxsize=None)  # a schema's keys never change; typing.get_type_hints is slow
def dataclass_keys(schema: type[Schema]) -> tuple[Key, ...]:
    hints = typing.get_type_hints(schema)
    return tuple(Key(f.name, hints[f.name], dict(f.metadata) or ANY, f.default is MISSING,
                     None if f.default is MISSING else f.default) for f in fields(schema))


def signature_keys(fn: Callable, filled: tuple[str, ...], skip_first: bool = True) -> tuple[list[Key], bool]:
    """The keyword settings of a callable (all but its first positional parameter, unless not
    `skip_first`, and the `filled` ones initlab passes itself), and whether it also takes **kwargs.

    Read once per function (a third of checking a job's settings: typing.get_type_hints compiles
    its annotations), unless the function cannot be a cache key."""
    try:
        keys, open_ended = _signature_keys(fn, filled, skip_first)
    except TypeError:  # unhashable
        keys, open_ended = _read_signature_keys(fn, filled, skip_first)
    return list(keys), open_ended


@functools.lru_cache(maxsize=256)
def _signature_keys(fn: Callable, filled: tuple[str, ...], skip_first: bool) -> tuple[tuple[Key, ...], bool]:
    keys, open_ended = _read_signature_keys(fn, filled, skip_first)
    return tuple(keys), open_ended


def _read_signature_keys(fn: Callable, filled: tuple[str, ...], skip_first: bool) -> tuple[list[Key], bool]:
    params = list(inspect.signature(fn).parameters.values())
    try:  # a class's settings are its __init__'s (initlab.model.MLP)
        hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn, include_extras=True)
    except Exception:  # annotations that do not resolve (a forward reference): check names only
        hints = {}
    keys, open_ended = [], False
    for p in params[1:] if skip_first else params:
        if p.kind is p.VAR_KEYWORD:
            open_ended = True
        elif p.kind is not p.VAR_POSITIONAL and p.name not in filled:
            tp, rule = _split_annotated(hints.get(p.name, Any))
            required = p.default is inspect.Parameter.empty
            keys.append(Key(p.name, tp, rule, required, None if required else p.default))
    return keys, open_ended


# --- checking -----------------------------------------------------------------------------------


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)  # Optional[x] and torch's `float | Tensor`


def _type_words(tp: Any) -> str:
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if _is_union(tp):
        inner = [_type_words(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(inner) + (" or null" if type(None) in typing.get_args(tp) else "")
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if typing.get_origin(tp) is list:
        return "a list"
    return words.get(tp, "a value")


def _has_type(value: Any, tp: Any) -> bool:
    if _is_union(tp):
        return any(_has_type(value, a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is typing.Literal:
        return value in typing.get_args(tp)
    if typing.get_origin(tp) is list:
        return isinstance(value, list) and all(_has_type(v, typing.get_args(tp)[0]) for v in value)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (bool, str, dict):
        return isinstance(value, tp)
    return True


def _check_keys(path: str, node: dict, keys: list[Key], relations: tuple, owner: str,
                open_ended: bool = False, ignore: tuple[str, ...] = ()) -> None:
    known = {k.name: k for k in keys}
    for name in node:
        if name not in known and name not in ignore and not open_ended:
            raise ConfigError(f"{path}.{name}: not a setting of {owner} (allowed: {', '.join(known) or 'none'})")
    for key in keys:
        if key.name not in node:
            if key.required:
                raise ConfigError(f"{path}.{key.name} is missing: {owner} needs it (add it with +{path}.{key.name}=...)")
            continue
        value = node[key.name]
        if value is None and _has_type(None, key.type) and key.type is not Any:
            continue
        if (value == AUTO and key.name in AUTO_KEYS) or (value == CRITICAL and key.name == "gain"):
            continue  # filled from model.activation before the scheme is called (init.resolve_auto)
        if (key.type is not Any and not _has_type(value, key.type)) or not key.rule["ok"](value):
            allowed = key.rule.get("allowed") or _type_words(key.type)
            raise ConfigError(f"{path}.{key.name}={show(value)}: must be {allowed}")
    values = {**{k.name: k.default for k in keys}, **node}
    for message, holds in relations:
        if not holds(values):
            shown = ", ".join(f"{path}.{k}={show(v)}" for k, v in values.items() if k in message.split())
            raise ConfigError(f"{shown}: {message}")


def check_launcher(launcher) -> None:
    """The vectorized launchers' own values (launcher.VectorizedLauncher), read off the launcher object
    Hydra made from hydra.launcher: a ConfigError naming a wrong one and what is allowed. Unchecked,
    max_group_size=0 meant "as memory allows", a negative one planned no group and ended in an
    AttributeError traceback, and memory_fraction=2 sized groups past the free memory."""
    keys = dataclass_keys(VectorizedLauncher)
    for_submitit = getattr(launcher, "params", {})  # a submitit launcher's keys for its executor
    node = {k.name: getattr(launcher, k.name) if hasattr(launcher, k.name) else for_submitit[k.name]
            for k in keys if hasattr(launcher, k.name) or k.name in for_submitit}
    _check_keys("hydra.launcher", node, list(keys), (), "hydra.launcher", open_ended=True)


def _check_node(path: str, node: dict, schema: type[Schema], ignore: tuple[str, ...] = ()) -> None:
    _check_keys(path, node, dataclass_keys(schema), schema.relations, path, ignore=ignore)


def _check_signed(path: str, node: dict, signed: Signed) -> None:
    """A node against the signature of the callable its `_target_` names (schema.SIGNED)."""
    target = node.get("_target_")
    if signed.targets is not None and target not in signed.targets:
        raise ConfigError(f"{path}._target_={show(target)}: must be one of {', '.join(signed.targets)}")
    fn = locate(path, target, signed.takes, signed.examples)
    keys, open_ended = signature_keys(fn, signed.filled, skip_first=signed.takes is not None)
    keys = [_with_rule(k, signed.rules) for k in keys]
    relations = (*getattr(fn, "relations", ()), *signed.relations)
    _check_keys(path, node, keys, relations, target, open_ended, ignore=("_target_",))


def _with_rule(key: Key, rules: Mapping[str, dict]) -> Key:
    """A key whose annotation carries no rule takes its Signed entry's rule by name (torch's optimizers)."""
    if key.rule is ANY and key.name in rules:
        return Key(key.name, key.type, rules[key.name], key.required, key.default)
    return key


def _node(container: dict, path: str) -> dict:
    node: Any = container
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{path} is missing: choose one with {path}=<option>")
        node = node[part]
    if not isinstance(node, dict):
        raise ConfigError(f"{path}={show(node)}: must be a config group, chosen with {path}=<option>")
    return node


def _check_critical(container: dict) -> None:
    """init.gain=critical needs one sigma_b^2 for every layer, and a bias group that says it."""
    from initlab.theory import bias_moments

    if container["init"].get("gain") == CRITICAL and bias_moments(container["bias"]) is None:
        raise ConfigError(f"init.gain=critical: needs bias=zeros, constant or normal (one bias mean and variance for every layer); "
                          f"bias._target_={show(container['bias'].get('_target_'))} is not one of them")


def validate(cfg: DictConfig) -> dict:
    """Check a composed config against the schema; return it resolved, as plain containers.

    A job config Hydra composed for a sweep still holds its `hydra` node: it is left out (and
    not copied). Raises ConfigError with a one-line message for the first value that is not allowed.
    """
    return check(resolved(cfg, [k for k in cfg if k != "hydra"]))


def resolved(cfg: DictConfig, keys: list) -> dict:
    """The top-level `keys` of `cfg`, resolved, as plain containers (ConfigError when one does not resolve)."""
    try:
        return {key: OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
                for key, node in ((k, cfg[k]) for k in keys)}
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or "config"
        raise ConfigError(f"{key}: {str(e).splitlines()[0]}") from None


def check(container: dict) -> dict:
    """validate() on a config already resolved into plain containers (`resolved`); completes it (rerun)."""
    rerun = container.get("rerun", False)
    if not isinstance(rerun, bool):
        raise ConfigError(f"rerun={show(rerun)}: must be true or false")
    container["rerun"] = rerun
    for path, schema in FIXED.items():
        _check_node(path, _node(container, path), schema)
    for path, signed in SIGNED.items():
        _check_signed(path, _node(container, path), signed)
    _check_critical(container)
    from initlab.config.loggers import check as check_loggers

    check_loggers(container.get("logger"))
    return container
