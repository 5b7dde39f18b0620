"""Shared helpers of the benchmarks: compose initlab's real config, time a callable."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

CONF = Path(__file__).resolve().parent.parent / "conf"


def config(*overrides: str):
    os.environ.setdefault("INITLAB_DATA", str(CONF.parent.parent / "shared" / "data"))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=["trainer.progress=false", *overrides])


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    """Wall seconds of one call (CUDA work included: synchronizes before and after)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out
