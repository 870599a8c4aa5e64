"""The one way hot-path kernels are compiled: numba, cached on disk, GIL released.

numba keeps compiled kernels in a cache next to their module (``__pycache__``),
or under ``NUMBA_CACHE_DIR`` or the user's cache directory. Where none of these
can be written (a read-only install run by a user without a home directory),
numba refuses to decorate a cached function at all; :func:`kernel` then compiles
without the cache, so such a process pays the compile at every start instead of
failing to import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)


def kernel(function: F) -> F:
    """``numba.njit(cache=True, nogil=True)``, without the cache where none can be written."""
    compiled: Any
    try:
        compiled = numba.njit(cache=True, nogil=True)(function)
    except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
        log.warning(
            "numba cache unavailable for %s (%s): compiling per process", function.__qualname__, exc
        )
        compiled = numba.njit(nogil=True)(function)
    return compiled  # type: ignore[no-any-return]
