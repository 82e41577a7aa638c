"""Python's cycle collector tuned for the toolkit's bulk runs, and restored afterwards."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Final

# Container allocations between two young-generation collections during a bulk run (CPython's default is 700).
BULK_THRESHOLD: Final = 100_000
_runs = 0
_saved_thresholds: tuple[int, int, int] = gc.get_threshold()


@contextlib.contextmanager
def bulk_allocation() -> Iterator[None]:
    """For a run that decodes millions of short-lived items: every page of a Scan or of rows is thousands of dicts,
    and at the default threshold the collector ran every few hundred of them, each time walking the long-lived
    objects (botocore's service models alone are hundreds of thousands) as they aged into the older generations.
    Profiled on a full verification: the collector took 40 % of the process's CPU. Here the objects alive at the
    start are frozen out of the collector's sight and young collections are rarer; cycles are still collected.
    The caller's settings come back at the end, and the frozen objects are handed back to the collector."""
    global _saved_thresholds, _runs  # one collector per process, shared by overlapping runs
    if _runs == 0:
        _saved_thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(BULK_THRESHOLD, *_saved_thresholds[1:])
    _runs += 1
    try:
        yield
    finally:
        _runs -= 1
        if _runs == 0:  # the last of overlapping runs (a backfill and a verify in one process) restores
            gc.set_threshold(*_saved_thresholds)
            gc.unfreeze()
