"""The loss checks of a training loop's log steps, read without making the host wait for the GPU.

A run stops at the first log step whose loss is not finite; a stacked group freezes each member
whose loss is not finite at a log step. Reading that on the host (`bool(torch.isfinite(loss))`)
waits until the device has finished everything queued so far, and the host queues nothing while
it waits: each wait left the GPU idle while the host prepared the next step. On an H200 a graphed
single run took 0.056 s an epoch with these checks and 0.065 s with the loop waiting at each log
step (recording off; 0.065 against 0.069 s with recording on; benchmarks/bench_single_run.py).

`LogStepChecks(device)`: at a log step, `add(step, loss)` queues the check on the device (isfinite,
copied into pinned host memory without blocking, and a CUDA event behind it). `ready()` hands back
the checks whose event has completed, oldest first; `ready(wait=True)`, all of them (the loop
waits at an epoch's end anyway). The loop goes on in the meantime, and when a check comes back
not finite it rolls back to that log step: the steps taken since are dropped from its records, so
they are exactly the records of a loop that stopped there (training.Training, group.GroupTraining).
On the CPU a check is read at once: there is nothing to wait for.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

import torch


class LogStepChecks:
    """Pending finiteness checks of log-step losses; each (step, flags) comes back once, in order."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._pending: deque[tuple[int, torch.Tensor, Optional[torch.cuda.Event]]] = deque()

    def add(self, step: int, loss: torch.Tensor) -> None:
        """Check `loss` (a scalar, or one loss per member) of log step `step`."""
        finite = torch.isfinite(loss.detach())
        if self.device.type != "cuda":
            self._pending.append((step, finite, None))
            return
        host = torch.empty(finite.shape, dtype=torch.bool, pin_memory=True)
        host.copy_(finite, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(self.device))  # the loss's device, whichever is current
        self._pending.append((step, host, done))

    def ready(self, wait: bool = False) -> list[tuple[int, torch.Tensor]]:
        """The checks the device has finished (every pending one with `wait`), oldest first, as
        (step, finite): a bool tensor on the CPU shaped like the loss."""
        out = []
        while self._pending:
            step, finite, done = self._pending[0]
            if done is not None:
                if wait:
                    done.synchronize()
                elif not done.query():
                    break
            self._pending.popleft()
            out.append((step, finite))
        return out

    def first_not_finite(self, wait: bool = False) -> Optional[int]:
        """The first log step among the ready checks whose loss is not finite (a scalar loss), if any.
        The checks after it are dropped: the loop rolls back to that step."""
        for step, finite in self.ready(wait):
            if not bool(finite.all()):
                self._pending.clear()
                return step
        return None
