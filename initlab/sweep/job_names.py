"""A sweep job's folder name, and the `initlab_job` resolver that gives it to Hydra
(hydra.sweep.subdir in conf/hydra/output/initlab.yaml). Importing this module registers it."""

from __future__ import annotations

import hashlib
import re

from omegaconf import OmegaConf


def job_dirname(overrides: str) -> str:
    """A sweep job's folder name from its overrides (Hydra's override_dirname).

    The same overrides always give the same folder, whatever the job's number, so re-running
    a sweep finds each configuration's earlier run (resume) and never mixes two configurations
    in one folder. Characters that are not safe in a folder name (the '/' of init=timm/trunc_normal)
    are replaced, and a short digest keeps such names, and long ones, distinct.
    """
    if not overrides:
        return "default"
    safe = re.sub(r"[^A-Za-z0-9=,._+-]", "_", overrides)
    if safe == overrides and len(safe) <= 100:
        return safe
    return f"{safe[:80]}-{hashlib.sha256(overrides.encode()).hexdigest()[:8]}"


OmegaConf.register_new_resolver("initlab_job", job_dirname, replace=True)
