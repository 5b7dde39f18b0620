"""What a run's summary.json says about the run besides its numbers: config, choices, versions."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import platform
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Callable, Optional

from typing import TYPE_CHECKING

# What is left out of the identity (settings that say where or how visibly a run happens; groups
# that change the verdict, the bookkeeping or where records are copied) is store/keys.py's table.
from initlab.store.keys import NOT_IDENTITY_GROUPS, WHERE_NOT_WHAT
from initlab.config.schema import STANDARD_PARAM

if TYPE_CHECKING:  # the report reads provenance too, and must not wait a second for torch to import
    import torch

_PACKAGES = ("initlab", "torch", "torchvision", "hydra-core", "omegaconf", "numpy", "pandas")

# A run's identity (summary.json's config_hash) is the computation it did, so that a resumed sweep
# skips it after initlab is upgraded. Version 1 is the identity of initlab 0.2.0 (summaries without
# an identity_version field). Two rules keep it stable:
# - A key added later, whose default computes what initlab computed before the key existed, goes
#   into NEUTRAL_DEFAULTS with that default: holding it, the key is left out of the identity, so a
#   run recorded before the key existed and a new run with the default have one identity.
# - A change that cannot be said that way (a key renamed or moved, a value that means something
#   else now) bumps IDENTITY_VERSION and adds MIGRATIONS[old version]: a function turning a config
#   recorded under the old version into the new form. A run's recorded config is migrated, then hashed.
IDENTITY_VERSION = 1
NEUTRAL_DEFAULTS: dict[str, Any] = {
    "trainer.jacobian_inputs": 2,  # added in 0.3: a measurement at init that does not change training
    "trainer.tf32": False,  # added in 0.3: off is the FP32 matmuls every earlier run used
    "trainer.fixed_batch": False,  # added in 0.3: every earlier run drew a new batch at every step
}
# Whole groups added later, left out of the identity while they compute what every earlier run computed.
NEUTRAL_GROUPS: dict[str, Callable[[dict], bool]] = {
    # added in 0.3: the standard parameterization, whatever its (unused) base_width
    "param": lambda node: node.get("_target_") == STANDARD_PARAM,
}
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}


def config_hash(settings: dict, version: Optional[int] = None) -> str:
    """A digest of the computation a config describes (for resume and dedup), for a config of this
    initlab or one recorded under an older identity `version` (migrated first)."""
    version = IDENTITY_VERSION if version is None else version
    if version > IDENTITY_VERSION:
        raise ValueError(f"identity version {version} comes from a newer initlab (this one knows {IDENTITY_VERSION})")
    for old in range(version, IDENTITY_VERSION):
        settings = MIGRATIONS[old](settings)

    def keep(node: Any, path: str) -> Any:
        if not isinstance(node, dict):
            return node
        return {k: keep(v, f"{path}{k}.") for k, v in node.items() if f"{path}{k}" not in WHERE_NOT_WHAT
                and not (f"{path}{k}" in NEUTRAL_DEFAULTS and NEUTRAL_DEFAULTS[f"{path}{k}"] == v)}

    ident = {group: keep(node, f"{group}.") for group, node in settings.items() if group not in NOT_IDENTITY_GROUPS
             and not (group in NEUTRAL_GROUPS and NEUTRAL_GROUPS[group](node))}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def recorded_hash(summary: dict) -> Optional[str]:
    """The identity, as this initlab computes it, of the run a summary.json describes (None when it
    comes from a newer initlab, whose identity this one cannot compute)."""
    version = summary.get("identity_version", 1)
    if not isinstance(version, int) or version > IDENTITY_VERSION:
        return None
    return config_hash(summary.get("config") or {}, version)


@functools.lru_cache(maxsize=1)
def _versions() -> tuple:
    # Package metadata lookups cost milliseconds and cannot change within a process.
    return tuple(versions_now().items())


def versions() -> dict[str, Optional[str]]:
    """Python's and the key packages' versions (looked up once per process)."""
    return dict(_versions())


def versions_now() -> dict[str, Optional[str]]:
    found: dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def device_name(device: Optional["torch.device"]) -> Optional[str]:
    if device is None:  # a run whose job died before it said where it ran (initlab.sweep.cluster)
        return None
    if device.type == "cuda":
        import torch

        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def finite_or_none(value: Any) -> Any:
    # summary.json stays strict JSON: a non-finite number (a diverged run) is written as null.
    return value if not isinstance(value, float) or math.isfinite(value) else None


def _finite(node: Any) -> Any:
    """A nested dict/list with every non-finite number written as null (strict JSON)."""
    if isinstance(node, dict):
        return {k: _finite(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_finite(v) for v in node]
    return finite_or_none(node)


def describe(metrics: dict) -> str:
    """The final metrics as one readable fragment of a log line."""
    def show(key: str, fmt: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else format(value, fmt)
    return (f"train_loss {show('train_loss', '.6f')} | test_loss {show('test_loss', '.4f')} | "
            f"test_acc {show('test_accuracy', '.2%')}")


def summary(*, status: str, metrics: dict, diverged_at_step: Optional[int], settings: dict, choices: dict,
            overrides: list, device: "torch.device", started_at: datetime, wall_time_s: float,
            error: Optional[BaseException], diagnosis: dict, stopped: Optional[dict],
            theory: Optional[dict] = None, jacobian: Optional[dict] = None) -> dict:
    """The content of summary.json (records.save_run adds the schema version)."""
    return {
        "status": status,
        "metrics": {k: finite_or_none(v) for k, v in metrics.items()},
        "diverged_at_step": diverged_at_step,
        "stopped_early": stopped,
        "diagnosis": diagnosis,
        "theory": _finite(theory),
        "jacobian": _finite(jacobian),
        "error": None if error is None else {"type": type(error).__name__, "message": str(error)},
        "choices": choices,
        "overrides": overrides,
        "config": settings,
        "config_hash": config_hash(settings),
        "identity_version": IDENTITY_VERSION,
        "device": device_name(device),
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 3),
        "versions": versions(),
    }
