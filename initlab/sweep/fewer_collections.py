"""Python's cyclic garbage collector, run less often while a vectorized sweep plans and trains."""

from __future__ import annotations

import atexit
import gc


class FewerCollections:
    """Python's cyclic garbage collector, run less often during a vectorized sweep.

    A sweep holds every job's config (the sweeper's check of the batch composes them all before
    launch(), and each JobReturn keeps one), thousands of objects each. By default a collection
    runs every 700 allocations and the oldest generation's traverses everything alive: deriving
    a job's config took twice as long as without. From the launcher's setup to the end of
    launch(), objects alive at the start are frozen out of the collections (gc.freeze) and the
    youngest generation is collected every `threshold` allocations; reference counting frees
    everything without cycles as before, and the collector catches up when the sweep ends.

    While the sweep is planned (the sweeper's check, the launcher's jobs) the oldest generation
    is not collected at all: each of its collections traversed every config made so far, 14 s of
    pauses (2.2, 4.5, 7.2 s) in the first 75 s of a 10,000-job study. Once the plan is made
    (`settle`), what is alive is frozen (it lives to the sweep's end) and the oldest generation
    is collected as usual again, over what the training makes. A submitting process that trains
    nothing (cluster.py) settles again after each group's JobReturns.
    """

    def __init__(self, threshold: int = 50_000, planning_threshold: int = 1_000_000) -> None:
        self.threshold, self.planning_threshold, self.before, self.at_exit = threshold, planning_threshold, None, False

    def start(self) -> None:
        if not self.at_exit:
            # The interpreter's last act is a full collection of everything still alive: ~1.6 ms
            # per job of a finished sweep (Hydra keeps every job's config in its JobReturn).
            # Frozen, it is skipped; files are closed and logs flushed before (atexit runs last
            # in, first out: logging's own handler runs after this one).
            atexit.register(gc.freeze)
            self.at_exit = True
        if self.before is None:
            self.before = gc.get_threshold()
            gc.freeze()
            # (the oldest generation's threshold counts collections of the middle one)
            gc.set_threshold(max(self.before[0], self.threshold), self.before[1], self.planning_threshold)

    def settle(self) -> None:
        """Everything alive now lives to the end of the sweep: out of the collections from here on."""
        if self.before is not None:
            gc.freeze()
            gc.set_threshold(max(self.before[0], self.threshold), *self.before[1:])

    def collect(self) -> None:
        """Free what was let go since it was frozen (a full collection, once), then settle again."""
        if self.before is not None:
            gc.unfreeze()
            gc.collect()
            self.settle()

    def stop(self) -> None:
        if self.before is not None:
            gc.set_threshold(*self.before)
            gc.unfreeze()
            self.before = None


COLLECTIONS = FewerCollections()
