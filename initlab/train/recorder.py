"""The Recorder: runs the probes at log steps, keeps their values on the device, and turns them into
the tidy layers table."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import torch

from initlab.train.gpu import side_streams
from initlab.store.records import layers_frame, str_column

from initlab.train.layers import Layers
from initlab.train.probes import DEFAULT_PROBES


class Recorder:
    """Runs the probes at log steps and keeps their values, per member, until a table is asked for."""

    def __init__(self, probes=DEFAULT_PROBES) -> None:
        self.probes = [p() for p in probes]
        self.metrics = [m for p in self.probes for m in p.metrics]
        self._values: list[torch.Tensor] = []  # each (members, layers, metrics)
        self._index: list[tuple[int, int]] = []
        self._pending: list[Optional[torch.Tensor]] = []
        self._host: Optional[np.ndarray] = None  # every value on the CPU, (steps, members, layers, metrics)
        self._host_index: Optional[np.ndarray] = None  # _index as an array, (steps, 2), made with _host

    def before_step(self, layers: Layers) -> None:
        with torch.no_grad():
            # While a CUDA graph is captured, parts of the probes may run side by side from here
            # (side_streams): the fork marks the stream where backward() has just finished.
            layers.fork = side_streams.fork(layers.weights[0])
            self._pending = [p.before_step(layers) for p in self.probes]

    def after_values(self, layers: Layers) -> torch.Tensor:
        """This log step's values, (members, layers, metrics): before_step's and the after_step probes'."""
        with torch.no_grad():
            parts = [v if v is not None else p.after_step(layers) for p, v in zip(self.probes, self._pending)]
            return torch.cat(parts, 2).float()

    def append(self, values: torch.Tensor, step: int, epoch: int) -> None:
        """Keep a log step's values (after_values; a tensor no later step writes into)."""
        self._values.append(values)
        self._index.append((step, epoch))
        self._host = None

    def truncate(self, last_step: int) -> None:
        """Forget the log steps after `last_step` (a loop that rolled back to it: finite_checks)."""
        while self._index and self._index[-1][0] > last_step:
            self._index.pop()
            self._values.pop()
        self._host = None

    def state(self) -> tuple:
        """What before_step left for after_step (its values, the probes' own attributes): a CUDA
        graph's capture keeps it, as those tensors are the graph's outputs (graphs.py)."""
        return list(self._pending), [dict(vars(p)) for p in self.probes]

    def restore(self, state: tuple) -> None:
        pending, probes = state
        self._pending = list(pending)
        for probe, attributes in zip(self.probes, probes):
            vars(probe).update(attributes)

    def count(self) -> int:
        """How many log steps have been recorded."""
        return len(self._values)

    def mean_since(self, first: int, metric: str, member: int = 0) -> Optional[torch.Tensor]:
        """Per-layer mean of `metric` over the log steps recorded from index `first` on (on the CPU)."""
        if first >= len(self._values):
            return None
        column = self.metrics.index(metric)
        return torch.stack([v[member, :, column] for v in self._values[first:]]).mean(0).cpu()

    def member_values(self, member: int = 0, last_step: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """One member's values up to `last_step`, (steps, layers, metrics) in float64, and each row's
        (step, epoch): what `table` makes a table of."""
        if not self._values:
            return np.empty((0, 0, len(self.metrics))), np.empty((0, 2), dtype=np.int64)
        if self._host is None:  # one copy from the device serves every member's table
            self._host = torch.stack(self._values).cpu().numpy().astype(np.float64)
            self._host_index = np.asarray(self._index, dtype=np.int64)
        # log steps are recorded in order: those up to last_step are the first n
        n = len(self._index) if last_step is None else int(np.searchsorted(self._host_index[:, 0], last_step, "right"))
        if not n:
            return np.empty((0, 0, len(self.metrics))), np.empty((0, 2), dtype=np.int64)
        return self._host[:n, member], self._host_index[:n]

    def table(self, member: int = 0, last_step: Optional[int] = None) -> pd.DataFrame:
        """One member's records as a tidy table (step, epoch, layer, metric, value), up to `last_step`."""
        return table_of(*self.member_values(member, last_step), self.metrics)


def table_of(values: np.ndarray, index: np.ndarray, metrics: list[str]) -> pd.DataFrame:
    """The tidy table (step, epoch, layer, metric, value) of values (steps, layers, metrics) recorded
    at the (step, epoch) rows of `index`."""
    if not len(values):
        return layers_frame()
    n_steps, n_layers, n_metrics = values.shape
    per_step = n_layers * n_metrics
    return pd.DataFrame({
        "step": np.repeat(index[:, 0], per_step),
        "epoch": np.repeat(index[:, 1], per_step),
        "layer": np.tile(np.repeat(np.arange(n_layers, dtype=np.int64), n_metrics), n_steps),
        "metric": str_column(metrics, np.tile(np.arange(n_metrics, dtype=np.int32), n_steps * n_layers)),
        "value": values.reshape(-1),
    })
