"""``pipeline.jit.prefetch``: emitted as LLVM's prefetch, without effect on results."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.jit import prefetch

numba = pytest.importorskip("numba")


@numba.njit
def _gather(values, index, ahead):  # type: ignore[no-untyped-def]
    total = 0.0
    for i in range(len(index)):
        if i + ahead < len(index):
            prefetch(values, index[i + ahead])
        total += values[index[i]]
    return total


@pytest.mark.parametrize("dtype", [np.int64, np.float64, np.bool_])
def test_a_prefetching_gather_sums_as_a_plain_one(dtype: type) -> None:
    rng = np.random.default_rng(3)
    values = (rng.integers(0, 100, 50_000)).astype(dtype)
    index = rng.integers(0, len(values), 10_000)
    expected = float(values[index].astype(np.float64).sum())
    assert _gather(values, index, 0) == expected
    assert _gather(values, index, 8) == expected
    strided = values[::3]  # a non-contiguous view: the element's address honours strides
    small = index % len(strided)
    assert _gather(strided, small, 8) == float(strided[small].astype(np.float64).sum())


def test_the_compiled_kernel_holds_the_prefetch_instruction() -> None:
    values, index = np.zeros(4), np.arange(4)
    _gather(values, index, 1)
    listings = _gather.inspect_llvm().values()  # one per signature compiled so far
    assert listings and all("llvm.prefetch" in ir for ir in listings)
