"""What a run's summary.json says about the run besides its numbers: config, choices, versions."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import platform
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Optional

import torch

# Settings that change where or how visibly a run happens, not what it computes.
# Settings that say where or how visibly a run happens, not what it computes. The report
# leaves them out of its columns for the same reason.
WHERE_NOT_WHAT = ("trainer.progress", "data.cache", "data.cache_dir", "data.source.root", "data.source.download")
_NOT_IDENTITY_GROUPS = {"diagnose", "rerun"}  # they change the verdict or the bookkeeping, not the training
_PACKAGES = ("initlab", "torch", "torchvision", "hydra-core", "omegaconf", "numpy", "pandas")


def config_hash(settings: dict) -> str:
    """A digest of the resolved config that identifies a run's computation (for resume, dedup)."""
    def keep(node: Any, path: str) -> Any:
        if not isinstance(node, dict):
            return node
        return {k: keep(v, f"{path}{k}.") for k, v in node.items() if f"{path}{k}" not in WHERE_NOT_WHAT}

    ident = {group: keep(node, f"{group}.") for group, node in settings.items() if group not in _NOT_IDENTITY_GROUPS}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


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


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def finite_or_none(value: Any) -> Any:
    # summary.json stays strict JSON: a non-finite number (a diverged run) is written as null.
    return value if not isinstance(value, float) or math.isfinite(value) else None


def describe(metrics: dict) -> str:
    """The final metrics as one readable fragment of a log line."""
    def show(key: str, fmt: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else format(value, fmt)
    return (f"train_loss {show('train_loss', '.6f')} | test_loss {show('test_loss', '.4f')} | "
            f"test_acc {show('test_accuracy', '.2%')}")


def summary(*, status: str, metrics: dict, diverged_at_step: Optional[int], settings: dict, choices: dict,
            overrides: list, device: torch.device, started_at: datetime, wall_time_s: float,
            error: Optional[BaseException], diagnosis: dict, stopped: Optional[dict]) -> dict:
    """The content of summary.json (records.save_run adds the schema version)."""
    return {
        "status": status,
        "metrics": {k: finite_or_none(v) for k, v in metrics.items()},
        "diverged_at_step": diverged_at_step,
        "stopped_early": stopped,
        "diagnosis": diagnosis,
        "error": None if error is None else {"type": type(error).__name__, "message": str(error)},
        "choices": choices,
        "overrides": overrides,
        "config": settings,
        "config_hash": config_hash(settings),
        "device": device_name(device),
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 3),
        "versions": versions(),
    }
