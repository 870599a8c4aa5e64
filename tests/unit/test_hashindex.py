"""Int64Index against a plain dict: each batch method means the same dict
operations applied one key at a time, in order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.hashindex import Int64Index, _home

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
EXTREMES = [I64_MIN, I64_MIN + 1, -1, 0, 1, I64_MAX - 1, I64_MAX]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def arr(values: list[int]) -> Any:
    return np.array(values, np.int64)


def check_same(index: Int64Index, model: dict[int, int]) -> None:
    assert len(index) == len(model)
    keys, values = index.items()
    assert dict(zip(keys.tolist(), values.tolist(), strict=True)) == model
    assert len(keys) == len(set(keys.tolist()))
    # every entry is still reachable along its probe run
    assert index.get_many(keys).tolist() == values.tolist()


# Keys whose probes start at the last two or first two slots of any table of
# up to 256 slots: long probe runs that wrap around the end.
COLLIDING = [k for k in range(-5000, 5000) if (_home(k, 255) + 2) & 255 < 4][:12]
# Small ranges make repeats within a batch and across batches common; the
# extremes check that no key doubles as an empty-slot marker.
ANY_KEY = st.one_of(
    st.sampled_from(COLLIDING),
    st.integers(-50, 50),
    st.sampled_from(EXTREMES),
    st.integers(I64_MIN, I64_MAX),
)
VALUE = st.integers(-3, 3) | st.integers(I64_MIN, I64_MAX)
Op = tuple[str, list[tuple[int, int]]]


def ops(keys: st.SearchStrategy[int]) -> st.SearchStrategy[list[Op]]:
    kind = st.sampled_from(["put", "get", "pop", "delete", "scalar"])
    return st.lists(st.tuples(kind, st.lists(st.tuples(keys, VALUE), max_size=80)), max_size=30)


def run_against_dict(steps: list[Op], capacity: int) -> None:
    index, model = Int64Index(capacity), {}
    for op, pairs in steps:
        keys, values = arr([k for k, _ in pairs]), arr([v for _, v in pairs])
        if op == "put":
            index.put_many(keys, values)
            model.update(pairs)
        elif op == "get":
            assert index.get_many(keys, -7).tolist() == [model.get(k, -7) for k, _ in pairs]
        elif op == "pop":
            assert index.pop_many(keys, -7).tolist() == [model.pop(k, -7) for k, _ in pairs]
        elif op == "delete":
            expected = 0
            for k, v in pairs:
                if model.get(k) == v:
                    del model[k]
                    expected += 1
            assert index.delete_matching(keys, values) == expected
        else:
            for k, _ in pairs:
                assert (k in index) == (k in model)
                assert index.get(k, 99) == model.get(k, 99)
        check_same(index, model)


@FAST
@given(ops(ANY_KEY), st.integers(0, 100))
def test_matches_dict(steps: list[Op], capacity: int) -> None:
    run_against_dict(steps, capacity)


@FAST
@given(ops(st.sampled_from(COLLIDING)))
def test_matches_dict_in_one_crowded_probe_run(steps: list[Op]) -> None:
    run_against_dict(steps, 0)


@FAST
@given(
    st.integers(I64_MIN, I64_MAX - 10_000),
    st.integers(1, 3000),
    st.sampled_from([1, 2, 7, 1 << 24]),
    st.randoms(use_true_random=False),
)
def test_growth_then_deletion_heavy(first: int, n: int, step: int, rng: Any) -> None:
    """Structured ids (runs with a stride) grow the table, then most leave in random order."""
    ids = [first + i * step for i in range(n) if first + i * step <= I64_MAX]
    index, model = Int64Index(), {}
    for lo in range(0, len(ids), 500):
        chunk = ids[lo : lo + 500]
        index.put_many(arr(chunk), arr(list(range(lo, lo + len(chunk)))))
        model.update(zip(chunk, range(lo, lo + len(chunk)), strict=True))
    check_same(index, model)
    order = ids[:]
    rng.shuffle(order)
    gone, kept = order[: len(order) * 3 // 4], order[len(order) * 3 // 4 :]
    half = len(gone) // 2
    assert index.pop_many(arr(gone[:half])).tolist() == [model.pop(k) for k in gone[:half]]
    rest = gone[half:]
    assert index.delete_matching(arr(rest), arr([model[k] for k in rest])) == len(rest)
    for k in rest:
        del model[k]
    check_same(index, model)
    assert index.get_many(arr(gone)).tolist() == [-1] * len(gone)
    assert index.get_many(arr(kept)).tolist() == [model[k] for k in kept]


def test_probe_runs_that_wrap_around_the_table() -> None:
    """Keys whose probes start at the last slots of a 16-slot table: deleting
    one shifts back entries that wrapped round to the start."""
    mask = 15
    last = [k for k in range(2000) if _home(k, mask) == mask][:3]
    first = [k for k in range(2000) if _home(k, mask) == 0][:2]
    for victim in [*last, *first]:
        index = Int64Index()
        keys = arr([*last, *first])  # 5 entries: slots 15, 0, 1, 2, 3
        index.put_many(keys, keys * 10)
        model = {k: k * 10 for k in keys.tolist()}
        assert index.pop_many(arr([victim])).tolist() == [model.pop(victim)]
        check_same(index, model)


def test_put_many() -> None:
    index = Int64Index()
    index.put_many(arr([3, 4, 3]), arr([30, 40, 31]))
    assert len(index) == 2
    assert index.get(3) == 31
    assert index.get(4) == 40


def test_get_many() -> None:
    index = Int64Index()
    index.put_many(arr([I64_MIN, 0, I64_MAX]), arr([1, 2, 3]))
    assert index.get_many(arr([0, 5, I64_MAX, I64_MIN])).tolist() == [2, -1, 3, 1]
    assert index.get_many(arr([5]), default=-9).tolist() == [-9]
    assert index.get_many(arr([])).tolist() == []


def test_pop_many() -> None:
    index = Int64Index()
    index.put_many(arr([1, 2]), arr([10, 20]))
    assert index.pop_many(arr([2, 7, 2])).tolist() == [20, -1, -1]
    assert len(index) == 1
    assert 2 not in index
    assert 1 in index


def test_delete_matching() -> None:
    index = Int64Index()
    index.put_many(arr([1, 2, 3]), arr([10, 20, 30]))
    assert index.delete_matching(arr([1, 2, 4, 1]), arr([10, 21, 40, 10])) == 1
    assert sorted(zip(*(a.tolist() for a in index.items()), strict=True)) == [(2, 20), (3, 30)]
    assert len(index) == 2


def test_scalar_methods() -> None:
    index = Int64Index()
    index.put_many(arr([-1]), arr([5]))
    assert -1 in index
    assert 0 not in index
    assert "x" not in index
    assert index.get(-1) == 5
    assert index.get(0) == -1
    assert index.get(0, 7) == 7


def test_length_mismatch_is_refused() -> None:
    index = Int64Index()
    with pytest.raises(ValueError):
        index.put_many(arr([1, 2]), arr([1]))
    with pytest.raises(ValueError):
        index.delete_matching(arr([1, 2]), arr([1]))
