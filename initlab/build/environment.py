"""What the machine must provide for a config to run: its device, a writable output folder.

Each problem is one readable line that names the value and what this machine has instead
(`Unavailable`, a ConfigError: the command prints it and exits 2 before anything trains).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import torch

from initlab.config.check import ConfigError


class Unavailable(ConfigError):
    """The config asks for something this machine does not have; its message is one readable line."""


def available_devices() -> list[str]:
    """The devices torch can use here, by the names trainer.device takes."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def check_device(name: str, setting: str = "trainer.device") -> None:
    """Raise Unavailable when a device setting (trainer.device; an entry of hydra.launcher.devices:
    `setting`, as the message names it) names a device this machine lacks (`auto` always works)."""
    if name in ("auto", "cpu"):
        return
    have = ", ".join(available_devices())
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match:
        if not torch.cuda.is_available():
            why = ("this torch is built without CUDA" if torch.version.cuda is None
                   else "torch finds no CUDA GPU or driver")
            raise Unavailable(f"{setting}={name}: no CUDA GPU here ({why}; torch {torch.__version__}); "
                              f"available: {have} (or {setting}=auto)")
        index, count = int(match.group(1) or 0), torch.cuda.device_count()
        if index >= count:
            raise Unavailable(f"{setting}={name}: this machine has {count} CUDA GPU(s); available: {have}")
    elif name == "mps" and "mps" not in available_devices():
        raise Unavailable(f"{setting}=mps: Apple's MPS is not available here; available: {have}")


def resolve_device(name: str, job_num: Optional[int] = None) -> torch.device:
    """The torch device for trainer.device (checked first). `auto` is CUDA when available, else the
    CPU; jobs of a multirun on a machine with several GPUs take them in turn (job n on GPU n mod
    count), so parallel jobs do not all land on GPU 0."""
    check_device(name)
    if name != "auto":
        return torch.device(name)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    return torch.device("cuda", job_num % count if job_num is not None and count > 1 else 0)


def matmul_precision(tf32: bool) -> None:
    """trainer.tf32: TF32 tensor-core matmuls on CUDA (or exact FP32). Process-wide in torch; set
    for every run, so a run with tf32=false after one with true gets FP32 again. No effect on CPU."""
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)


def check_writable(folder: str | Path, key: str) -> None:
    """Raise Unavailable unless `folder` exists or can be made, and a file can be written in it."""
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".initlab-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        where = Path(e.filename) if e.filename else path
        raise Unavailable(f"{key}={folder}: cannot write the output folder ({where}: {e.strerror or e}); "
                          f"set {key} to a folder you can write") from None
