"""Datasets as normalized in-memory tensors on the training device; batches are drawn by index.

torchvision parses (and, where allowed, downloads) the files once; the flattened, normalized
float32 tensors are then cached on disk, so later runs and parallel jobs skip the decode. A
file lock makes the cache safe when several jobs start at the same moment. Within one process
the tensors are also kept in memory, per device.
"""

from __future__ import annotations

import functools

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from hydra.utils import instantiate

CACHE_FORMAT = 1  # bump when the cached tensors change meaning


class DataError(RuntimeError):
    """The dataset could not be loaded; its message is one readable line."""


@dataclass(frozen=True)
class Tensors:
    """A dataset split into train and test, flattened to (N, features), normalized, on one device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @functools.cached_property
    def chance_accuracy(self) -> float:
        """The test accuracy of always answering the most frequent test class (computed once: every
        diagnosis context asks, and on a GPU reading it back syncs)."""
        return (self.test_y.bincount().max() / len(self.test_y)).item()

    @property
    def in_features(self) -> int:
        return self.train_x.shape[1]

    def to(self, device: torch.device) -> "Tensors":
        move = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")}
        return Tensors(num_classes=self.num_classes, **move)


class Synthetic:
    """A deterministic 10-class (by default) problem: Gaussian clusters in `in_features` dimensions.

    Class centers are N(0, separation²) per coordinate and every sample is its center plus
    N(0, 1) noise, so the classes overlap a little. The same `data_seed` always gives the same
    data, whatever the training seed. Exposes `data`, `targets` and `classes` like torchvision.
    """

    def __init__(self, train: bool, num_train: int, num_test: int, in_features: int,
                 num_classes: int, separation: float, data_seed: int) -> None:
        g = torch.Generator().manual_seed(data_seed)
        centers = torch.randn(num_classes, in_features, generator=g) * separation
        labels = torch.randint(num_classes, (num_train + num_test,), generator=g)
        samples = centers[labels] + torch.randn(num_train + num_test, in_features, generator=g)
        split = slice(0, num_train) if train else slice(num_train, None)
        self.data, self.targets = samples[split], labels[split]
        self.classes = [str(c) for c in range(num_classes)]


def _decode(source: dict, train: bool, mean: float, std: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    try:
        dataset = instantiate(source, train=train)
    except Exception as e:  # torchvision raises RuntimeError, URLError, OSError, ... for missing files
        name = source["_target_"].rsplit(".", 1)[-1]
        root = Path(str(source.get("root", "."))).expanduser().resolve()
        hint = ("downloading failed" if source.get("download") else "data.download=false")
        raise DataError(
            f"{name} could not be loaded from {root / name / 'raw'} ({hint}: {str(e).splitlines()[0]}). "
            f"Put the dataset's idx files there, or point data.source.root (or INITLAB_DATA) at a folder "
            f"that has {name}/raw/, or allow downloading with data.source.download=true."
        ) from None
    x = torch.as_tensor(dataset.data)
    x = (x.float() / 255.0 if x.dtype == torch.uint8 else x.float()).flatten(1)
    x = (x - mean) / std
    return x.contiguous(), torch.as_tensor(dataset.targets, dtype=torch.long), len(dataset.classes)


def _build(data_cfg: dict) -> Tensors:
    src, mean, std = data_cfg["source"], data_cfg["mean"], data_cfg["std"]
    train_x, train_y, num_classes = _decode(src, True, mean, std)
    test_x, test_y, _ = _decode(src, False, mean, std)
    return Tensors(train_x, train_y, test_x, test_y, num_classes)


def cache_key(data_cfg: dict) -> str:
    """A digest of everything that changes the tensors (not where the raw files happen to live)."""
    source = {k: v for k, v in data_cfg["source"].items() if k not in ("root", "download")}
    what = {"source": source, "mean": data_cfg["mean"], "std": data_cfg["std"], "format": CACHE_FORMAT}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def _cached(data_cfg: dict) -> Tensors:
    """Load the tensors from the disk cache, building it first (once, under a lock) if needed."""
    folder = Path(data_cfg["cache_dir"]).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data_cfg['name']}-{cache_key(data_cfg)}.pt"
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            tensors = _build(data_cfg)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(tensors.__dict__, tmp)
            os.replace(tmp, path)  # readers never see a half-written cache
            return tensors
    return Tensors(**torch.load(path, mmap=True, weights_only=True))


_memory: dict[tuple[str, str], Tensors] = {}


def load(data_cfg: dict, device: torch.device) -> Tensors:
    """The dataset `data_cfg` describes, normalized and on `device` (kept in memory per process)."""
    key = (json.dumps(data_cfg, sort_keys=True), str(device))
    if key not in _memory:
        tensors = _cached(data_cfg) if data_cfg["cache"] else _build(data_cfg)
        _memory[key] = tensors.to(device)
    return _memory[key]


def batches(num_samples: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch of shuffled sample indices in batches (the last one may be smaller)."""
    return list(torch.randperm(num_samples, generator=generator).split(batch_size))
