"""The one way initlab finds what a config's `_target_` names.

`locate` is the config check's: it walks the dotted path itself so that a target that cannot be
used is one readable line naming why (no such module, no such attribute, not a function).
`resolve` is everything's after the check, Hydra's public `hydra.utils.get_object`: the same
lookup Hydra's `instantiate` makes, so a name means here what it means to Hydra.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Optional

from hydra.utils import get_object

from initlab.config.errors import ConfigError


def resolve(target: str) -> Any:
    """The object a checked `_target_` names."""
    return get_object(target)


def show(value: Any) -> str:
    """A value as the command line spells it: null, true/false, 'text', numbers and lists as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def locate(path: str, target: Any, takes: Optional[str], examples: str) -> Callable:
    """The function a `_target_` names, or a one-line ConfigError saying why it cannot be used.
    `takes`: what its first positional argument receives (None: it need not take one)."""
    hint = (f"must name an importable function that takes the {takes} as its first argument ({examples})"
            if takes else f"must name one of {examples}")
    if not isinstance(target, str) or "." not in target:
        raise ConfigError(f"{path}._target_={show(target)}: {hint}")
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable module prefix, then attributes
        module_name = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and module_name.startswith(e.name):
                continue  # this prefix is not a module: try a shorter one
            raise ConfigError(f"{path}._target_={show(target)}: importing {module_name} failed ({e}); {hint}") from None
        except Exception as e:  # the user's module raised while importing
            raise ConfigError(f"{path}._target_={show(target)}: importing {module_name} failed "
                              f"({type(e).__name__}: {e})") from None
        for at, attr in enumerate(parts[cut:], start=cut):
            if not hasattr(obj, attr):  # named as the user spelled it (initlab.init is initlab.build.init)
                raise ConfigError(f"{path}._target_={show(target)}: {'.'.join(parts[:at])} has no "
                                  f"attribute {attr!r}; {hint}")
            obj = getattr(obj, attr)
        break
    else:
        raise ConfigError(f"{path}._target_={show(target)}: no module {parts[0]!r} can be imported "
                          f"(is its folder on PYTHONPATH?); {hint}")
    if not callable(obj):
        raise ConfigError(f"{path}._target_={show(target)}: not a function; {hint}")
    positional = [p for p in inspect.signature(obj).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    if takes and not positional:
        raise ConfigError(f"{path}._target_={show(target)}: takes no positional argument; {hint}")
    return obj
