"""Several devices at once for the vectorized launcher: one worker thread per device.

Each worker trains one stacked group at a time on its device; the main thread hands out the
groups, and writes each group's job folders (Hydra's run_job and the callbacks are not
thread-safe) as soon as the group finishes, so a kill still loses only the groups in flight.
Models are drawn under vectorized.BUILDING (the global RNG), so every member gets the weights
its ordinary run draws, and the records are those one device writes. PyTorch releases the GIL
inside its kernels, so the workers' GPU work overlaps.
"""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import torch
from hydra.core.utils import JobReturn

log = logging.getLogger("initlab")


def run_on_devices(sweep, plan: list, devices: list[torch.device], returns: dict[int, JobReturn]) -> list:
    """Train `plan` (lists of vectorized.Job) on `devices`, one group per device at a time; fill
    `returns`; the jobs another process held (to be waited for by the caller)."""
    log.info(f"Vectorized: {len(devices)} workers, on {', '.join(map(str, devices))}")
    queue = list(enumerate(plan, 1))
    free = list(devices)
    running: dict[Future, tuple[list, list, torch.device]] = {}
    elsewhere: list = []
    with ThreadPoolExecutor(len(devices), thread_name_prefix="initlab-device") as pool:
        while queue or running:
            while queue and free:
                n, planned = queue.pop(0)
                group, busy, locks = sweep.claim(n, len(plan), planned, returns)
                elsewhere += busy
                if len(group) <= 1:
                    try:  # nothing to stack: the ordinary task, here (run_job is not thread-safe)
                        if group:
                            returns[group[0].num] = sweep._run_job(group[0], sweep.launcher.task_function)
                    finally:
                        for lock in locks:
                            lock.release()
                    continue
                device = free.pop(0)
                running[pool.submit(sweep._train, group, device)] = (group, locks, device)
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                group, locks, device = running.pop(future)
                try:
                    sweep.write_group(group, future.result(), returns)
                finally:
                    for lock in locks:
                        lock.release()
                    free.append(device)
    return elsewhere
