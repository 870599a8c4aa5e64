"""Get a worker process ready before its first batch: kernels compiled, heap settled.

numba compiles a kernel on its first call (seconds), or loads it from its
on-disk cache (see :mod:`pipeline.jit`) in well under a second.
A worker calls :func:`warm_up` at start, so no batch, and no latency figure,
pays for it.
"""

from __future__ import annotations

import gc
import logging
import time

from pipeline import hashindex
from pipeline.features import derive, online, terminal
from pipeline.scoring import window_stats
from pipeline.serde import fast_encode, vectorized

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Run every hot-path kernel once on a tiny input."""
    started = time.monotonic()
    online.warm_up()
    derive.warm_up()
    terminal.warm_up()
    vectorized.warm_up()
    fast_encode.warm_up()
    hashindex.warm_up()
    window_stats.warm_up()
    log.info("kernels ready in %.2f s", time.monotonic() - started)


def settle_heap() -> None:
    """Keep what is loaded by now out of the garbage collector's scans.

    Start-up leaves many long-lived objects (modules, the model, the terminal
    table). Left in the collector's view, the first batches pay full
    collections that scan them all: in the throughput benchmark's process,
    0.48 s of collections over the first 300k records, three of them full.
    Frozen, they are never scanned; the loop makes few reference cycles, so
    young collections can also be much rarer. Process-wide: call it from a
    process that the worker owns.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
