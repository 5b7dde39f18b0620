"""A stand-in for CUDA graphs on the CPU (graphs.py): `ReplayedEagerly`, and the `replayed` fixture
(tests/conftest.py) that puts it in place of graphs.StepGraphs, for the CPU's runs and groups.

Its "replay" runs the step eagerly, copies the outputs into the tensors the capture returned (for a
single run, the gradients too) and spoils the fresh ones (NaN), so a loop that kept a loss past the
next step, read probe values the graph does not write, or updated with gradients other than the
graph's, records different numbers.
"""

import contextlib

import torch

from initlab.train.gpu import graphs
def _tensors(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


class _Eager:
    """A "graph" whose replay runs `step` and writes what it made into the capture's outputs: its
    result, and for a record step the probe values the recorder was left with at capture."""

    def __init__(self, step, out, owner):
        self.step, self.out, self.owner = step, out, owner

    def replay(self):
        params = self.owner.params or []
        held = [param.grad for param in params]  # a real replay leaves .grad as it is
        fresh = self.step().detach()
        self.out.resize_as_(fresh).copy_(fresh)
        fresh.fill_(float("nan"))
        captured = self.owner.captured.get(self.owner.last)  # the step being replayed, or the one this follows
        if captured is not None and captured.grads is not None:  # where the capture's backward wrote them
            for param, static, old in zip(params, captured.grads, held):
                if param.grad is not old:  # the step made new ones
                    static.copy_(param.grad)
                    param.grad.fill_(float("nan"))
                    param.grad = old
        if captured is not None and captured.probes is not None:
            # after a restore (an after-step graph) they are the same tensors
            pairs = [(static, new) for static, new in zip(_tensors(captured.probes), _tensors(self.owner.recorder.state()))
                     if static is not new]
            for static, new in pairs:  # all copied before any is spoiled: probe values may be views of one tensor
                static.copy_(new)
            for _, new in pairs:
                new.fill_(float("nan"))


class ReplayedEagerly(graphs.StepGraphs):
    captures = 0

    def _on_device(self):
        return contextlib.nullcontext()

    def _warm_up(self, step):
        step()  # for a training step: no update; leaves the recorder's state, as the capture would

    def _record(self, step):
        ReplayedEagerly.captures += 1
        out = torch.empty(0)
        return _Eager(step, out, self), out


def put_in_place(monkeypatch) -> None:
    """graphs.StepGraphs replaced by ReplayedEagerly, wanted wherever trainer.cuda_graphs is true."""
    monkeypatch.setattr(graphs, "wanted", lambda trainer, device: bool(trainer["cuda_graphs"]))
    monkeypatch.setattr(graphs, "StepGraphs", ReplayedEagerly)
    ReplayedEagerly.captures = 0
