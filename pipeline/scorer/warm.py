"""Compile the hot path's numba kernels before the first batch.

numba compiles a kernel on its first call (seconds), or loads it from its
on-disk cache (see :mod:`pipeline.jit`) in well under a second.
A worker calls :func:`warm_up` at start, so no batch, and no latency figure,
pays for it.
"""

from __future__ import annotations

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
