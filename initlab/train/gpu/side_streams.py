"""Independent parts of a record step run side by side on a GPU, while its CUDA graph is captured.

A record step's statistics are a few dozen small kernels: a reduction over 40,000 values keeps a
few of an H200's 132 SMs busy for ~10 us, mostly latency. In a captured graph the kernels of one
stream run one after another, each waiting for the last; kernels captured on streams forked from
it become parallel branches of the graph and run at the same time (PyTorch's multi-stream capture,
torch.cuda.graphs). `Fork` is that fork: made at the start of a record step's probes, it marks the
capturing stream there; `on(i)` runs a part on side stream i, which waits for that mark only (the
probes' inputs are ready there), so a part queued later on the host still starts at once on the
device; `join()` makes the capturing stream wait for every side stream used.

Only while a CUDA graph is being captured (`fork()` gives None otherwise): eager steps, the CPU
and the graphs' warm-ups run every part in order on one stream, which costs no events on the host.
The values are the same either way: the same kernels on the same inputs.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

SIDE_STREAMS = 4  # parts beyond this many share streams (round robin)
ENABLED = True  # benchmarks/bench_single_run.py times the step without the fork too
_streams: dict[int, list] = {}  # per device index: the side streams, made once


class Fork:
    """Side streams that start where the capturing stream stood when the fork was made."""

    def __init__(self, main: torch.cuda.Stream, streams: list) -> None:
        self.main, self.streams = main, streams
        self.start = torch.cuda.Event()
        self.start.record(main)
        self.used: list = []

    def on(self, part: int):
        """A context in which part `part`'s kernels go to a side stream (tensors made there must be
        handed back with `hand_back` before the capturing stream reads them)."""
        stream = self.streams[part % len(self.streams)]
        if stream not in self.used:
            stream.wait_event(self.start)
            self.used.append(stream)
        return torch.cuda.stream(stream)

    def reads(self, *tensors: torch.Tensor) -> None:
        """Tensors of the capturing stream that the side streams read: the allocator must not give
        their memory to anything else before those reads (Tensor.record_stream)."""
        for t in tensors:
            for stream in self.streams:
                t.record_stream(stream)

    def join(self) -> None:
        """The capturing stream waits for every side stream used: what they made is ready there."""
        for stream in self.used:
            self.main.wait_stream(stream)
        self.used = []

    def hand_back(self, *tensors: torch.Tensor) -> None:
        """Tensors made on a side stream that the capturing stream uses from now on."""
        for t in tensors:
            t.record_stream(self.main)


def fork(like: torch.Tensor) -> Optional[Fork]:
    """A Fork of the current stream when it is capturing a CUDA graph on `like`'s device, else None."""
    if not (ENABLED and like.is_cuda and torch.cuda.is_current_stream_capturing()):
        return None
    main = torch.cuda.current_stream(like.device)
    index = like.device.index if like.device.index is not None else torch.cuda.current_device()
    pool = _streams.get(index)
    if pool is None:  # one more than needed: the capturing stream may be one of torch's pooled streams too
        pool = _streams[index] = [torch.cuda.Stream(like.device) for _ in range(SIDE_STREAMS + 1)]
    return Fork(main, [s for s in pool if s != main][:SIDE_STREAMS])


def on(fork_: Optional[Fork], part: int):
    """fork_.on(part), or nothing (no fork: the current stream)."""
    return contextlib.nullcontext() if fork_ is None else fork_.on(part)
