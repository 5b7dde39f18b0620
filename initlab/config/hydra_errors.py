"""Hydra's composition errors as one readable line, like every other bad value initlab stops on.

A wrong option (`init=kaiming`), a key that is not there (`trainer.epochz=1`), several values
without `-m`, an override Hydra cannot parse: Hydra stops on each before anything runs, but with
a message of up to twenty lines (the options one per line, the config search path, a hint about
HYDRA_FULL_ERROR) and exit code 1. `one_line()` wraps the CLI's call of Hydra: those errors end
with one line that names the value, what is allowed there and the closest names, and exit code 2,
as a value the schema refuses (check.py). So does a value that one of initlab's Hydra-side
objects (a callback) refuses when Hydra instantiates it. Every other error, and every error when
HYDRA_FULL_ERROR is set, is Hydra's to report, as before.

Hydra reports through `hydra._internal.utils.run_and_report`, which `_run_hydra` looks up by
name each time it composes or runs: `one_line()` puts a wrapper in its place for the duration.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from contextlib import contextmanager
from typing import Iterator, Optional

from hydra.errors import (ConfigCompositionException, InstantiationException, MissingConfigException,
                          OverrideParseException, SearchPathException)
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

# Search paths every initlab command has: not worth naming in a one-line error.
_EVERYWHERE = ("pkg://hydra.conf", "structured://")


def message(error: BaseException) -> Optional[str]:
    """The one line for a composition error Hydra raised; None for any other error (Hydra reports it)."""
    if isinstance(error, MissingConfigException):
        return _missing(error)
    if isinstance(error, OverrideParseException):
        return _unparsed(error)
    if isinstance(error, ConfigCompositionException):
        return _composition(error)
    if isinstance(error, SearchPathException):  # --config-dir naming no folder
        return _joined(str(error), error.__cause__)
    if isinstance(error, InstantiationException) and isinstance(error.__cause__, ValueError) \
            and str(error.__cause__).startswith("hydra."):  # a Hydra-side object of initlab's refused its value
        return _first_line(error.__cause__)
    return None


def _missing(error: MissingConfigException) -> str:
    """`init=kaiming`: the group's options (Hydra lists them), the closest ones, where it looked."""
    wanted = error.missing_cfg_file or ""
    group, _, name = wanted.rpartition("/")
    searched = _search_path(str(error))
    where = f"; searched {', '.join(searched)}" if searched else ""
    options = error.options if error.options is not None else _group_options(group)
    if options is None or not group:  # a config outside any group initlab can list
        return f"{wanted}: no such config{where}"
    options = list(options)
    return (f"{group}={name}: no such option{_closest(name, options)}; the options: {', '.join(options) or 'none'} "
            f"(a new one is a file {wanted}.yaml in a folder given with --config-dir){where}")


def _group_options(group: str) -> Optional[list[str]]:
    """The options of a config group, from the config loader Hydra is composing with. Hydra lists
    them itself for `init=bogus` but not for one missing from a list (`init=[kaiming_normal,bogus]`)."""
    from hydra.core.global_hydra import GlobalHydra

    if not group or not GlobalHydra.instance().is_initialized():
        return None
    try:
        return GlobalHydra.instance().config_loader().get_group_options(group)
    except Exception:  # a group the repository cannot list: say what Hydra said
        return None


def _composition(error: ConfigCompositionException) -> str:
    text = str(error)
    cause = error.__cause__
    override = re.search(r"Could not override '([^']*)'", text)
    if override and isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and "not in struct" in str(cause):
        return _unknown_key(override.group(1), text, cause)
    if override and cause is not None:  # a value a typed node refuses (hydra.launcher.*, a structured config)
        return f"{_as_typed(override.group(1), text)}: {_first_line(cause)}"
    merging = re.match(r"Error merging override (\S+)", text)
    if merging and cause is not None:  # the same, in a sweep's job
        return f"{merging.group(1)}: {_first_line(cause)}"
    deleting = re.match(r"Could not delete from config\. '(.*)' does not exist", text)
    if deleting:
        return f"~{deleting.group(1)}: there is no {deleting.group(1)} to delete"
    ambiguous = re.match(r"Ambiguous value for argument '(.*)'", text)
    if ambiguous:
        key, _, values = ambiguous.group(1).partition("=")
        return (f"{ambiguous.group(1)}: several values make a sweep, which needs -m (--multirun); "
                f"a list is {key}=[{values}], a string {key}='\"{values}\"'")
    return _joined(text, cause)


def _unknown_key(path: str, text: str, cause: BaseException) -> str:
    """`trainer.epochz=1`: the node's keys, the closest ones, and how to add a key after all."""
    shown = _as_typed(path, text)
    parent = getattr(cause, "parent_node", None)
    keys = [str(k) for k in parent.keys()] if hasattr(parent, "keys") else []
    owner, _, key = path.rpartition(".")
    if not owner:
        keys = [k for k in keys if k != "hydra"]
    where = f"{owner} has no key {key!r}" if owner else f"the config has no key {key!r}"
    listed = f"; its keys: {', '.join(keys)}" if keys else ""
    return f"{shown}: {where}{_closest(key, keys)}{listed}; +{shown} adds it"


def _unparsed(error: OverrideParseException) -> str:
    lines = [line.strip() for line in error.message.splitlines() if line.strip()]
    grammar = next((line for line in lines if line.startswith("See ")), None)
    reason = "; ".join(line for line in lines if line is not grammar)
    url = re.search(r"https?://\S+", grammar or "")
    return (f"{error.override}: Hydra cannot parse this override ({reason})"
            + (f"; the grammar: {url.group(0)}" if url else ""))


def _joined(text: str, cause: Optional[BaseException]) -> str:
    """Any other composition error: its lines (and its cause's first), joined into one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if cause is not None and str(cause).strip():
        lines.append(_first_line(cause))
    return "; ".join(lines)


def _as_typed(path: str, text: str) -> str:
    """The override as the user typed it (key=value), read off Hydra's "use +key=value" hint; else the key."""
    added = re.search(r"use \+(\S.*)$", text, re.MULTILINE)
    return added.group(1) if added else path


def _full_error() -> bool:
    """HYDRA_FULL_ERROR=1: Hydra reports every error itself, with its traceback."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _closest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _search_path(text: str) -> list[str]:
    """The folders Hydra searched, from the 'Config search path:' lines of its message, less the
    ones every command has."""
    paths = re.findall(r"provider=[^,\n]*, path=(\S+)", text)
    return [p for p in paths if p not in _EVERYWHERE]


@contextmanager
def one_line() -> Iterator[None]:
    """While Hydra runs the CLI: its composition errors end as `initlab: <one line>`, exit code 2."""
    import hydra._internal.utils as hydra_utils

    report = hydra_utils.run_and_report

    def run_and_report(func):
        def guarded():
            try:
                return func()
            except Exception as e:
                line = None if _full_error() else message(e)
                if line is None:
                    raise
                print(f"initlab: {line}", file=sys.stderr)
                sys.exit(2)
        return report(guarded)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    except ValueError as e:  # Hydra's check of its own flags raises outside run_and_report: a traceback
        if not str(e).startswith("Only one of --run, --multirun") or _full_error():
            raise
        print(f"initlab: {e} (--cfg and --info show one job: drop -m and give each key one value)",
              file=sys.stderr)
        sys.exit(2)
    finally:
        hydra_utils.run_and_report = report
