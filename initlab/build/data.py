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
import logging
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import torch
from filelock import FileLock
from hydra.utils import instantiate

from initlab.config.schema import AT_LEAST_ONE, AT_LEAST_TWO, POSITIVE
from initlab.config.targets import resolve
from initlab.store import whole_files

log = logging.getLogger("initlab")

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

    @functools.cached_property
    def input_second_moment(self) -> float:
        """Mean squared input feature over the training set: q^0 of the mean-field theory."""
        return float(self.train_x.double().pow(2).mean())

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

    def __init__(self, train: bool, num_train: Annotated[int, AT_LEAST_ONE], num_test: Annotated[int, AT_LEAST_ONE],
                 in_features: Annotated[int, AT_LEAST_ONE], num_classes: Annotated[int, AT_LEAST_TWO],
                 separation: Annotated[float, POSITIVE], data_seed: int) -> None:
        g = torch.Generator().manual_seed(data_seed)
        centers = torch.randn(num_classes, in_features, generator=g) * separation
        labels = torch.randint(num_classes, (num_train + num_test,), generator=g)
        samples = centers[labels] + torch.randn(num_train + num_test, in_features, generator=g)
        split = slice(0, num_train) if train else slice(num_train, None)
        self.data, self.targets = samples[split], labels[split]
        self.classes = [str(c) for c in range(num_classes)]


# idx files (LeCun's MNIST format): magic 0 0 <type> <ndim>, ndim big-endian uint32 sizes, the data.
IDX_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def idx_problem(path: Path) -> Optional[str]:
    """What is wrong with the idx file at `path` (not one, cut short, too long), or None when its size
    is what its header says. Reads only the header."""
    return _idx_header(path)[0]


def _idx_header(path: Path) -> tuple[Optional[str], tuple[int, ...]]:
    """(what is wrong with the idx file at `path`, or None; the dimensions its header declares)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(4)
        if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in IDX_ITEM_BYTES:
            return f"{path}: not an idx file (it starts {magic.hex() or 'empty'}; an idx file starts 0000080N)", ()
        header = f.read(4 * magic[3])
    if len(header) < 4 * magic[3]:
        return f"{path}: cut short inside its header ({size} bytes)", ()
    dims = struct.unpack(f">{magic[3]}I", header)
    need = 4 + len(header) + math.prod(dims) * IDX_ITEM_BYTES[magic[2]]
    if size != need:
        shape = " x ".join(map(str, dims))
        return (f"{path}: {'cut short' if size < need else 'longer than its header says'}: {size:,} bytes, "
                f"its header ({shape}) needs {need:,}"), dims
    return None, dims


def _raw_files(source: dict) -> tuple[Path, list[Path]]:
    """The raw folder a torchvision dataset reads and the files it expects there (none if unknown)."""
    name = source["_target_"].rsplit(".", 1)[-1]
    raw = Path(str(source.get("root", "."))).expanduser().resolve() / name / "raw"
    try:
        resources = resolve(source["_target_"]).resources
    except Exception:  # not a torchvision idx dataset (a user's own, Synthetic)
        return raw, []
    return raw, [raw / Path(url).name.removesuffix(".gz") for url, _ in resources]


def shapes(data_cfg: dict) -> tuple[int, int]:
    """(input features, classes) of the dataset `data_cfg` describes, read without decoding it: from
    the source's own settings (Synthetic), a copy already in memory, or the idx header of its first
    multi-dimensional raw file and the dataset class's `classes`; else by loading it. Sizes stacked groups."""
    source = data_cfg["source"]
    if "in_features" in source and "num_classes" in source:
        return int(source["in_features"]), int(source["num_classes"])
    described = json.dumps(data_cfg, sort_keys=True)
    for (key, _), tensors in _memory.items():
        if key == described:
            return tensors.in_features, tensors.num_classes
    classes = getattr(resolve(source["_target_"]), "classes", None)
    for path in _raw_files(source)[1] if classes else []:
        problem, dims = _idx_header(path) if path.is_file() else ("missing", ())
        if problem is None and len(dims) > 1:  # the images: (samples, rows, columns)
            return math.prod(dims[1:]), len(classes)
    tensors = load(data_cfg, torch.device("cpu"))
    return tensors.in_features, tensors.num_classes


def _decode(source: dict, train: bool, mean: float, std: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    try:
        dataset = instantiate(source, train=train)
    except Exception as e:  # torchvision raises RuntimeError, URLError, OSError, ... for missing files
        name = source["_target_"].rsplit(".", 1)[-1]
        raw, expected = _raw_files(source)
        damaged = [problem for f in expected if f.is_file() and (problem := idx_problem(f))]
        if damaged:
            raise DataError(f"{name}: {damaged[0]}. Copy the file again (or delete it and allow downloading "
                            f"with data.source.download=true)") from None
        cause = e.__cause__ or e  # Hydra wraps the dataset's own error in an InstantiationException
        missing = [f.name for f in expected if not f.exists()]
        hint = ("downloading failed" if source.get("download") else "data.source.download=false")
        first = (str(cause).splitlines() or [type(cause).__name__])[0]
        raise DataError(
            f"{name} could not be loaded from {raw} ({hint}: {first}"
            f"{'; missing: ' + ', '.join(missing) if missing else ''}). "
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
    path = folder / f"{data_cfg['name']}-{cache_key(data_cfg)}.pt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock")
        lock.acquire()
    except OSError as e:
        raise DataError(f"data.cache_dir={data_cfg['cache_dir']}: cannot write the data cache there "
                        f"({e.strerror or e}); set data.cache_dir to a folder you can write, or data.cache=false") from None
    try:
        if path.exists():
            try:
                return Tensors(**torch.load(path, mmap=True, weights_only=True))
            except Exception as e:  # written atomically, so only a damaged disk or a hand edit gets here
                log.warning(f"the data cache {path} cannot be read ({type(e).__name__}): building it again")
        whole_files.remove_leftovers(path)  # a build killed mid-write, where files cannot be nameless
        for stale in folder.glob(f"{path.stem}.tmp*"):  # one killed before whole_files (its own name for them)
            stale.unlink(missing_ok=True)
        tensors = _build(data_cfg)
        # whole or not at all: readers never see a half-written cache, and a kill leaves no 200 MB temporary
        whole_files.write(path, lambda f: torch.save(tensors.__dict__, f))
        return tensors
    finally:
        lock.release()


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
