"""Checks every composed config against the typed schema (schema.py) before anything trains.

Each YAML option in ``conf/<group>/`` names the arguments of the callable in its
``_target_``; the schema's dataclass for that target says what type and range each
argument may take. A config that breaks the schema stops with one line, for example::

    lr.value=-0.1: must be a number > 0

We check after Hydra composes instead of registering these dataclasses in Hydra's
ConfigStore: ConfigStore validation errors span several lines, stop with exit code 1, and
the schema entries show up as choices in Hydra's "Available options" lists.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from initlab.schema import FIXED, TARGETED, Schema


class ConfigError(ValueError):
    """A config value that the schema does not allow; its message is one readable line."""


# --- checking -----------------------------------------------------------------------------------


def _type_words(tp: Any) -> str:
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if typing.get_origin(tp) is typing.Union:
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return _type_words(inner) + " or null"
    if typing.get_origin(tp) is list:
        return "a list"
    return words.get(tp, "a value")


def _has_type(value: Any, tp: Any) -> bool:
    if typing.get_origin(tp) is typing.Union:
        return value is None or any(_has_type(value, a) for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is list:
        return isinstance(value, list) and all(_has_type(v, typing.get_args(tp)[0]) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (bool, str, dict):
        return isinstance(value, tp)
    return True


def _show(value: Any) -> str:
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def _check_node(path: str, node: dict, schema: type[Schema], ignore: tuple[str, ...] = ()) -> None:
    hints = typing.get_type_hints(schema)
    known = {f.name: f for f in fields(schema)}
    for key in node:
        if key not in known and key not in ignore:
            raise ConfigError(f"{path}.{key}: not a setting of {path} (allowed: {', '.join(known)})")
    for name, f in known.items():
        if name not in node:
            if f.default is MISSING:
                raise ConfigError(f"{path}.{name} is missing")
            continue
        value, rule = node[name], f.metadata
        if value is None and typing.get_origin(hints[name]) is typing.Union:
            continue
        allowed = rule.get("allowed") or _type_words(hints[name])
        if hints[name] is not Any and not _has_type(value, hints[name]):
            raise ConfigError(f"{path}.{name}={_show(value)}: must be {allowed}")
        if not rule["ok"](value):
            raise ConfigError(f"{path}.{name}={_show(value)}: must be {allowed}")
    for message, holds in schema.relations:
        if not holds(node):
            shown = ", ".join(f"{path}.{k}={_show(v)}" for k, v in node.items() if k in message.split())
            raise ConfigError(f"{shown}: {message}")


def _schema_for(path: str, node: dict, schemas: tuple[type[Schema], ...]) -> type[Schema]:
    target = node.get("_target_")
    for schema in schemas:
        if target in schema.targets:
            return schema
    known = [t for s in schemas for t in s.targets]
    raise ConfigError(f"{path}._target_={_show(target)}: must be one of {', '.join(known)}")


def _node(container: dict, path: str) -> dict:
    node: Any = container
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{path} is missing: choose one with {path}=<option>")
        node = node[part]
    if not isinstance(node, dict):
        raise ConfigError(f"{path}={_show(node)}: must be a config group, chosen with {path}=<option>")
    return node


def validate(cfg: DictConfig) -> dict:
    """Check a composed config against the schema; return it resolved, as plain containers.

    Raises ConfigError with a one-line message for the first value that is not allowed.
    """
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or "config"
        raise ConfigError(f"{key}: {str(e).splitlines()[0]}") from None
    rerun = container.get("rerun", False)
    if not isinstance(rerun, bool):
        raise ConfigError(f"rerun={_show(rerun)}: must be true or false")
    container["rerun"] = rerun
    for path, schema in FIXED.items():
        _check_node(path, _node(container, path), schema)
    for path, schemas in TARGETED.items():
        node = _node(container, path)
        _check_node(path, node, _schema_for(path, node, schemas), ignore=("_target_",))
    return container
