"""Training steps replayed as CUDA graphs: one launch per step instead of dozens.

On a GPU a step of the founding net is a few microseconds of arithmetic behind ~40 kernel
launches (gather the batch, forward, loss, backward, the probes), each costing the CPU tens of
microseconds: a single run was launch-bound at 0.375 s per epoch on an H200, and a stacked group
of 256 runs spent ~5 ms a step. A CUDA graph records a step's kernels once and replays them
with one launch (PyTorch's "whole network capture", torch.cuda.graphs).

`StepGraphs(body, after, recorder, device)` captures `body(idx, record, update)` the first time
each kind of step comes (batch shape x recording on or off); afterwards a step copies its batch
indices into the graph's input and replays it (and, for a single run, points the parameters'
`.grad` at the gradients that graph writes). After a record step (and the optimizer's update),
`after()`, the recorder's after-step values, is replayed from a graph of its own. A replay reads
and writes the memory the capture saw, so `body` must keep what outlives a step (parameters,
optimizer state, the data) in tensors it updates in place, never rebinds. The probes'
values of a record step are outputs of its graph; after each replay the recorder is pointed back
at them (its probes may have seen another kind of step since).

Used on CUDA devices when trainer.cuda_graphs is true (the default); the CPU runs `body` eagerly.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from initlab.train.recorder import Recorder

# Steps run (on a side stream, without the optimizer update) before a capture, so that lazily
# made state (cuBLAS handles and workspaces, autograd's) exists before recording starts.
WARMUP_STEPS = 2


def wanted(trainer: dict, device: torch.device) -> bool:
    """Whether a run's steps are replayed as CUDA graphs: trainer.cuda_graphs on a CUDA device."""
    return bool(trainer["cuda_graphs"]) and device.type == "cuda"


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    idx: torch.Tensor  # input: this step's batch indices, copied in before each replay
    loss: torch.Tensor  # output: this step's loss (per member for a group), overwritten by the next replay
    probes: Optional[tuple]  # the recorder's state the capture left (record steps)
    grads: Optional[list]  # the parameters' gradients the graph writes (when the update runs outside it)


class StepGraphs:
    """One CUDA graph per kind of step, captured on first use and replayed after."""

    def __init__(self, body: Callable[..., torch.Tensor], after: Callable[[], torch.Tensor], recorder: Recorder,
                 device: torch.device, params: Optional[list[torch.Tensor]] = None) -> None:
        # `body` and `after` are methods of the training object: held weakly, so that there is no
        # reference cycle and a finished group's graphs and their memory go as soon as the group does.
        self._body, self._after = weakref.WeakMethod(body), weakref.WeakMethod(after)
        self.recorder, self.device = recorder, device
        self.captured: dict[tuple, _Captured] = {}
        self.after: dict[tuple, tuple] = {}  # per kind of record step: (graph, its values)
        self.last: Optional[tuple] = None  # the kind of the last step
        self.side: Optional[torch.cuda.Stream] = None  # where warm-ups and captures run
        # One memory pool for all of them: they replay one at a time on one stream, and every
        # graph's outputs stay referenced here, so no capture reuses another's outputs.
        self.pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None
        # A single run's parameters (its update runs outside the graphs): `body` sets their
        # gradients to None before backward, as PyTorch's whole-network capture does, so each graph
        # makes its own gradient tensors instead of zeroing and accumulating into shared ones (12
        # kernels fewer a step for the founding net). After a replay, .grad must be that graph's.
        self.params = params

    def step(self, idx: torch.Tensor, record: bool) -> torch.Tensor:
        """Run one step on the batch `idx`; its loss, valid until the next step (clone to keep it)."""
        key = self.last = (tuple(idx.shape), record)
        with self._on_device():
            captured = self.captured.get(key)
            if captured is None:
                captured = self.captured[key] = self._capture(idx, record)
            captured.idx.copy_(idx)
            captured.graph.replay()
        if captured.grads is not None:
            for p, grad in zip(self.params, captured.grads):
                if p.grad is not grad:  # another kind of step's graph, or a capture, bound them since
                    p.grad = grad
        if captured.probes is not None:
            self.recorder.restore(captured.probes)
        return captured.loss

    def after_step(self) -> torch.Tensor:
        """`after()` (the recorder's after-step values) for the record step just taken, from a graph
        captured for that kind of step (it reads what that step's graph wrote); valid until the next."""
        with self._on_device():
            after = self.after.get(self.last)
            if after is None:
                values = lambda: self._after()()  # noqa: E731
                self._warm_up(values)
                after = self.after[self.last] = self._record(values)
            after[0].replay()
        return after[1]

    @property
    def body(self) -> Callable[..., torch.Tensor]:
        return self._body()  # type: ignore[return-value]

    def _capture(self, idx: torch.Tensor, record: bool) -> _Captured:
        static_idx = idx.clone()
        self._warm_up(lambda: self.body(static_idx, record, update=False))  # the parameters stay as they are
        graph, loss = self._record(lambda: self.body(static_idx, record, update=True))
        grads = None if self.params is None else [p.grad for p in self.params]
        return _Captured(graph, static_idx, loss, self.recorder.state() if record else None, grads)

    # The three CUDA-specific parts (tests replace them to check the bookkeeping on the CPU).
    def _on_device(self):
        return torch.cuda.device(self.device)

    def _warm_up(self, step: Callable[[], torch.Tensor]) -> None:
        # On the stream the capture then uses: autograd keeps the stream it first saw a parameter's
        # gradient accumulated on, and warns (and syncs) when a later backward runs on another.
        if self.side is None:
            self.side = torch.cuda.Stream()
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            for _ in range(WARMUP_STEPS):
                step()
        torch.cuda.current_stream().wait_stream(self.side)

    def _record(self, step: Callable[[], torch.Tensor]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """The graph of `step`, and its output."""
        graph = torch.cuda.CUDAGraph()
        # thread_local: another worker thread may be using its own GPU meanwhile (workers.py).
        with torch.cuda.graph(graph, pool=self.pool, stream=self.side, capture_error_mode="thread_local"):
            out = step()
        return graph, out.detach()  # not its autograd graph: the next capture starts afresh
