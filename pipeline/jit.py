"""The one way hot-path kernels are compiled: numba, cached on disk, GIL released.

numba keeps compiled kernels in a cache next to their module (``__pycache__``),
or under ``NUMBA_CACHE_DIR`` or the user's cache directory. Where none of these
can be written (a read-only install run by a user without a home directory),
numba refuses to decorate a cached function at all; :func:`kernel` then compiles
without the cache, so such a process pays the compile at every start instead of
failing to import.

:func:`prefetch` lets a kernel that walks rows whose memory is scattered (a
card's segment in the state pool, a terminal's rows) ask for the rows a few
ahead while it works on the current one, so their cache misses overlap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils as _cgutils
from numba.extending import intrinsic

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)

cgutils: Any = _cgutils  # untyped


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


@intrinsic
def _prefetch(typingctx: Any, array: Any, index: Any) -> Any:
    """Ask the CPU to bring ``array[index]`` (a 1-d array) into its caches; no effect
    on results. For compiled loops whose next rows' addresses are known early:
    their cache misses then overlap with the current row's work."""
    if not isinstance(array, types.Array) or array.ndim != 1:
        return None
    signature = types.void(array, index)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        kind = sig.args[0]
        handle = context.make_array(kind)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(
            context, builder, kind, handle, [args[1]], wraparound=False, boundscheck=False
        )
        i32, bytes_pointer = ir.IntType(32), ir.IntType(8).as_pointer()
        function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [bytes_pointer, i32, i32, i32]),
            "llvm.prefetch.p0",
        )
        # a read, kept in every cache level, of data
        flags = [ir.Constant(i32, value) for value in (0, 3, 1)]
        builder.call(function, [builder.bitcast(pointer, bytes_pointer), *flags])
        return context.get_dummy_value()

    return signature, codegen


prefetch = cast(Callable[[Any, Any], None], _prefetch)
