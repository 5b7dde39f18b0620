"""How much memory a stacked group's member needs: what sizes the groups of a vectorized sweep."""

from __future__ import annotations

import os

import torch


def layer_shapes(settings: dict, in_features: int, classes: int) -> list[tuple[int, int]]:
    """(out, in) of each linear layer of a member's model."""
    m = settings["model"]
    widths = [m["width"]] * m["depth"] + [classes]
    return list(zip(widths, [in_features] + widths[:-1]))


def member_bytes(settings: dict, in_features: int, classes: int) -> int:
    """A generous estimate of the memory one member needs while its group trains."""
    batch = settings["trainer"]["batch_size"]
    shapes = layer_shapes(settings, in_features, classes)
    widths = [o for o, _ in shapes]
    params = sum(o * i + o for o, i in shapes)
    # weights, grads, two optimizer buffers, the update-ratio snapshot, one weight-sized buffer more
    # (slack: a CUDA graph's memory pool); per-step activations and their grads, and a record step's
    # copy of the activations (probes.Activations stacks them; a graph's pool keeps it).
    return 4 * (6 * params + batch * (in_features + 6 * sum(widths)))


# On the CPU, the largest tensor a group makes at each step (a layer's stacked weight gradient,
# its update) stays below this. glibc hands out larger blocks as fresh pages every time (above
# its 32 MB mmap threshold) and the kernel faults them in one by one: 40 steps of 256 founding
# nets took 34.1 s in one group (14.9 M page faults), 21.3 s in groups of 26
# (benchmarks/bench_group_size.py, benchmarks/results/cpu-group-size.txt).
CPU_TENSOR_BYTES = 2**24


def member_tensor_bytes(settings: dict, in_features: int, classes: int) -> int:
    """The bytes one member adds to its group's largest per-step tensor: a weight matrix (and its
    gradient and update), or a batch's activations. (A record step's stacked activations,
    probes.Activations, can be larger for deep nets; made once in ten steps, they are left out.)"""
    shapes = layer_shapes(settings, in_features, classes)
    return 4 * max(max(o * i for o, i in shapes), settings["trainer"]["batch_size"] * max(max(s) for s in shapes))


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
