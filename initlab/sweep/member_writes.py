"""A finished group's job folders, written by several processes at once.

Writing one member's folder (.hydra/, its log file, the diagnosis, summary.json, the tables) is
~10 ms of Python on the 2-core CPU VM and ~20 ms on the H200 machine's host: 21 s of a 1,024-run
sweep during which the GPU waits (benchmarks/results/gpu-h200-graphs.txt). The members are
independent, so `MemberWriters` hands them to a pool of worker processes. Each worker does for
its member exactly what the launcher's own loop does (job_folders.write_member running the task
vectorized.writer), from the member's Outcome and the job's config (derived again from its
overrides, as the sweep's config loader derived it, or pickled whole); its console output is
captured and handed back, and the launcher prints it in job order and builds the JobReturn
itself, as write_member builds it. Workers fork from a forkserver that imported initlab once: a
fresh process, without the launcher's threads, locks or CUDA context, so forking it is safe. The
pool starts (on a thread) when the sweep knows it will pay, so the imports overlap the training.

Only for jobs no Hydra callback watches (job_folders.watches_jobs): such a callback runs in the
launcher's process, with the job's files on disk when it is called, as before. Anything the pool
cannot do (a worker that died, an outcome that does not pickle) is written by the launcher itself.
"""

from __future__ import annotations

import importlib
import io
import logging
import multiprocessing
import os
import pickle
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from hydra.core.utils import JobReturn, JobRuntime, JobStatus

log = logging.getLogger("initlab")

# Fewer members than this are written by the launcher itself: the pool's round trips would not pay.
MIN_MEMBERS = 16


def default_workers() -> int:
    """Worker processes when `hydra.launcher.write_workers` is not set: one per core this process may
    use (a SLURM job's share, not the node's) but one, at most 16; none below 4 cores. A worker
    spends ~12 ms on a member where the launcher alone spends ~8 (it derives the config again and
    converts it whole, without the sweep's shared parts), and the launcher ~1 ms handing it over
    and ~0.5 ms making its JobReturn; so it takes ~10 workers to keep up with the launcher, and on
    2 cores, where the launcher and the workers share them, writing with workers was slower than
    without (256 members: 3.3 s with two, 2.6 s with none)."""
    from initlab.cores import usable_cores

    cores = usable_cores()
    return min(16, cores - 1) if cores >= 4 else 0


@dataclass
class Written:
    """What a worker hands back for one member: what the JobReturn needs, and its console output."""

    status: JobStatus
    return_value: Any
    stdout: str
    stderr: str


class _Console(io.TextIOBase):
    """A worker's sys.stdout / sys.stderr: whatever is written goes to the current member's buffer
    (a logging handler keeps the stream it was configured with, so the stream itself must stay)."""

    def __init__(self) -> None:
        self.buffer_ = io.StringIO()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return self.buffer_.write(text)

    def take(self) -> str:
        text, self.buffer_ = self.buffer_.getvalue(), io.StringIO()
        return text


class _NoCallbacks:
    """Hydra's callbacks as a worker runs them: none watches a job (or the pool is not used)."""

    def on_job_start(self, **kwargs) -> None:
        pass

    def on_job_end(self, **kwargs) -> None:
        pass


_worker: dict = {}  # per worker process: its JobLogs, HydraYaml and consoles


def _start_worker() -> None:
    """A worker's set-up: the resolvers a job config uses (Hydra's, initlab_job), captured consoles."""
    from hydra.core.utils import setup_globals

    from initlab.sweep.job_folders import HydraYaml, JobLogs

    importlib.import_module("initlab.sweep.job_names")  # registers the initlab_job resolver (hydra.sweep.subdir)
    setup_globals()
    _worker.update(logs=JobLogs(), yaml=HydraYaml(), stdout=_Console(), stderr=_Console())
    sys.stdout, sys.stderr = _worker["stdout"], _worker["stderr"]


def _ready() -> int:
    return os.getpid()


def _write_in_worker(payload: bytes) -> tuple[list[Written], Optional[OSError]]:
    """A chunk of members' folders, in a worker: write_member with the task vectorized.writer for
    each, their files on a background thread (file_writes) and all on disk before it returns.
    What each member gave, and the first OSError (a full disk) if the writes failed: the writes
    queued after it were skipped, so the members without a summary.json stay unfinished."""
    from initlab.store.file_writes import BackgroundWrites
    from initlab.sweep.job_folders import write_member
    from initlab.sweep.jobs import writer

    members, cwd = _unpack(payload)
    os.chdir(cwd)  # relative sweep folders resolve as in the launcher
    written: list[Written] = []
    try:
        with BackgroundWrites():
            for job, result in members:
                ret = write_member(job.config, writer(job, result), _NoCallbacks(), _worker["logs"], _worker["yaml"],
                                   output_dir=job.output_dir)
                written.append(Written(ret.status, _travels(ret.return_value), _worker["stdout"].take(),
                                       _worker["stderr"].take()))
    except OSError as e:
        return written, e
    return written, None


@dataclass
class Recipes:
    """How a worker makes a job's config again instead of unpickling it: the sweep's config
    loader (job_configs.SweepConfigs) derives most job configs from a pickled base per set of
    group choices, and a worker derives them the same way (job_configs.derive) from the job's
    overrides. A config pickled whole was ~0.8 ms of the launcher's ~2 ms per member."""

    master: Any  # the sweep's config, as the loader was given it
    bases: dict  # signature -> the base config, pickled
    groups: set  # the config groups (their overrides are in the base)
    recipe: Callable[[Any], Optional[tuple]]  # a job config's signature, or None: pickle it whole


def _pack(chunk: list, cwd: str, recipes: Optional[Recipes]) -> bytes:
    """A chunk of (job, result) as a worker's payload: jobs whose config a recipe makes go without it."""
    items, bases = [], {}
    for job, result in chunk:
        signature = recipes.recipe(job.config) if recipes is not None else None
        if signature is not None:
            bases[signature] = recipes.bases[signature]
            job = replace(job, config=None)
        items.append((job, signature, result))
    shared = (recipes.master, recipes.groups) if bases else (None, set())
    return pickle.dumps((items, bases, shared, cwd, JobRuntime.instance().get("name")), protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(payload: bytes) -> tuple[list, str]:
    """A worker's (job, result) pairs, every job with its config, and the launcher's working folder."""
    from initlab.sweep.job_configs import derive
    from initlab.sweep.jobs import numbered

    items, bases, (master, groups), cwd, task_name = pickle.loads(payload)
    JobRuntime.instance().set("name", task_name)
    members = []
    for job, signature, result in items:
        if signature is not None:
            config = derive(bases[signature], master, _parsed(job.overrides), groups)
            job = replace(job, config=numbered(config, job.num))
        members.append((job, result))
    return members, cwd


def _parsed(overrides: list[str]) -> list:
    """Hydra's parse of each override string, each string parsed once per worker."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cache = _worker.setdefault("parsed", {})
    new = [o for o in dict.fromkeys(overrides) if o not in cache]
    if new:
        parser = _worker.get("parser") or _worker.setdefault("parser", OverridesParser.create())
        cache.update(zip(new, parser.parse_overrides(new)))
    return [cache[o] for o in overrides]


def _travels(value: Any) -> Any:
    """`value`, or for an exception that cannot be pickled back, a RuntimeError with its words."""
    try:
        pickle.dumps(value)
        return value
    except Exception:
        return RuntimeError(f"{type(value).__name__}: {value}")


class MemberWriters:
    """A pool of processes that write finished members' job folders (see the module's docstring)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: Optional[ProcessPoolExecutor] = None
        self.starting: Optional[threading.Thread] = None
        self.broken = workers < 1 or "forkserver" not in multiprocessing.get_all_start_methods()

    def worth(self, members: int) -> bool:
        return not self.broken and members >= MIN_MEMBERS

    def start(self) -> None:
        """Start the workers on a thread (the forkserver imports initlab first, a few seconds) while
        the caller goes on; the first write waits for them."""
        if self.broken or self.starting is not None:
            return
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["initlab.sweep.member_writes", "initlab.sweep.jobs", "pyarrow.parquet"])
        self.pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker)

        def spawn() -> None:  # the executor starts a process per task it has no idle worker for
            try:
                for future in [self.pool.submit(_ready) for _ in range(self.workers)]:
                    future.result()
            except Exception as e:
                log.warning(f"write workers did not start ({type(e).__name__}: {e}): the launcher writes the job folders")
                self.broken = True

        self.starting = threading.Thread(target=spawn, name="initlab-write-workers", daemon=True)
        self.starting.start()

    def write(self, members: list[tuple[Any, Any]], returns: dict[int, JobReturn],
              job_return: Callable[[Any], JobReturn], write_here: Callable[[list], None],
              recipes: Optional[Recipes] = None) -> None:
        """Write each (job, result) in a worker; fill `returns` and print each member's output in the
        jobs' order. `job_return(job)` is the launcher's JobReturn for a job a worker wrote (without
        status and value); `write_here(members)` writes members in the launcher's process (the
        fallback); `recipes`, when given, make the job configs in the workers. Raises the first
        OSError a worker met, once every member is handled."""
        self.start()
        if self.starting is not None:
            self.starting.join()
        cwd = os.getcwd()
        size = max(1, min(32, -(-len(members) // (4 * self.workers))))  # a few chunks per worker, for balance
        chunks = [members[i:i + size] for i in range(0, len(members), size)]
        futures = [self._submit(chunk, cwd, recipes) for chunk in chunks]
        error: Optional[OSError] = None
        for chunk, future in zip(chunks, futures):
            try:
                written, failed = future.result() if future is not None else ([], None)
            except BrokenProcessPool:
                self.broken, written, failed = True, [], None
            error = error or failed
            for (job, _), one in zip(chunk, written):
                sys.stdout.write(one.stdout)
                sys.stderr.write(one.stderr)
                ret = job_return(job)
                ret.status, ret.return_value = one.status, one.return_value
                returns[job.num] = ret
            if future is None or (not written and failed is None):  # the pool could not: write them here
                write_here(chunk)
        sys.stdout.flush()
        log.info(f"{len(members)} job folders written by {self.workers} processes" if not self.broken else
                 f"{len(members)} job folders written (the write processes stopped: the rest written here)")
        if error is not None:
            raise error

    def _submit(self, chunk: list, cwd: str, recipes: Optional[Recipes]):
        """The future of a chunk's writing, or None when it must be written here."""
        if self.broken:
            return None
        try:  # pickled now: the launcher changes the job configs once they are written (write_member)
            payload = _pack(chunk, cwd, recipes)
        except Exception:  # e.g. a failed outcome's exception that does not pickle
            return None
        try:
            return self.pool.submit(_write_in_worker, payload)
        except BrokenProcessPool:
            self.broken = True
            return None

    def close(self) -> None:
        if self.starting is not None:
            self.starting.join()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.pool, self.starting = None, None
