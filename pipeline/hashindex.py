"""A compiled hash map from int64 keys to int64 values, worked on a batch at a time.

Open addressing in two numpy arrays: per slot a key and its value side by
side (one cache line for both), and whether the slot is used (so every int64
is a valid key). Linear probing, with backward-shift deletion: a removed
entry's slot is refilled from further along its probe run, so there are no
tombstones and a lookup stops at the first empty slot. The table doubles when
it would grow past 5/8 full. Keys are spread by the splitmix64 finalizer, so
sequential or otherwise structured ids do not cluster.

Each batch method is one compiled pass over its keys, in order, with the
meaning of the same dict operations applied one key at a time.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipeline.jit import kernel

I64 = npt.NDArray[np.int64]
Slots = npt.NDArray[np.int64]  # (size, 2): key, value
Used = npt.NDArray[np.bool_]

_MIN_CAPACITY = 16
_LOAD_NUM, _LOAD_DEN = 5, 8  # grow past 5/8 full


class Int64Index:
    """int64 -> int64, like a dict, with batch methods that each run one kernel."""

    def __init__(self, capacity: int = _MIN_CAPACITY) -> None:
        """An empty index with room for ``capacity`` entries before it grows."""
        size = _MIN_CAPACITY
        while size * _LOAD_NUM < capacity * _LOAD_DEN:
            size *= 2
        self._slots = np.zeros((size, 2), np.int64)
        self._used = np.zeros(size, np.bool_)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, int | np.integer):
            return False
        return bool(_find(self._slots, self._used, int(key)) >= 0)

    def get(self, key: int, default: int = -1) -> int:
        slot = _find(self._slots, self._used, int(key))
        return default if slot < 0 else int(self._slots[slot, 1])

    def items(self) -> tuple[I64, I64]:
        """(keys, values) of every entry, in table order."""
        entries = self._slots[self._used]
        return entries[:, 0].copy(), entries[:, 1].copy()

    def put_many(self, keys: I64, values: I64) -> None:
        """Set ``keys[i]`` to ``values[i]`` in order (a repeated key keeps its last value)."""
        keys, values = _int64(keys), _int64(values)
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys but {len(values)} values")
        self._reserve(self._count + len(keys))
        self._count += _put_many(self._slots, self._used, keys, values)

    def get_many(self, keys: I64, default: int = -1) -> I64:
        """The value of each key (``default`` where absent)."""
        return _get_many(self._slots, self._used, _int64(keys), default)

    def pop_many(self, keys: I64, default: int = -1) -> I64:
        """Remove the keys in order and return their values (``default`` where absent,
        so a key repeated in ``keys`` is found only the first time)."""
        out = np.empty(len(keys), np.int64)
        self._count -= _pop_many(self._slots, self._used, _int64(keys), default, out)
        return out

    def delete_matching(self, keys: I64, values: I64) -> int:
        """Remove each ``keys[i]`` whose value is ``values[i]``; the number removed."""
        keys, values = _int64(keys), _int64(values)
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys but {len(values)} values")
        removed = int(_delete_matching(self._slots, self._used, keys, values))
        self._count -= removed
        return removed

    def _reserve(self, count: int) -> None:
        size = len(self._used)
        if count * _LOAD_DEN <= size * _LOAD_NUM:
            return
        while count * _LOAD_DEN > size * _LOAD_NUM:
            size *= 2
        old = self._slots, self._used
        self._slots = np.zeros((size, 2), np.int64)
        self._used = np.zeros(size, np.bool_)
        _rehash(*old, self._slots, self._used)


def _int64(array: I64) -> I64:
    return np.ascontiguousarray(array, np.int64)


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels."""
    index = Int64Index()
    keys = np.arange(3, dtype=np.int64)
    index.put_many(keys, keys)
    index.get_many(keys)
    index.delete_matching(keys[:1], keys[:1])
    index.pop_many(keys)
    _ = 0 in index


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S1 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(1)


@kernel
def _home(key: int, mask: int) -> int:  # pragma: no cover - compiled
    """The slot a key's probe starts at (splitmix64's finalizer, in uint64)."""
    x = np.uint64(key)
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    x = x ^ (x >> _S31)
    return int(np.int64(x >> _S1) & mask)


@kernel
def _find(slots: Slots, used: Used, key: int) -> int:  # pragma: no cover - compiled
    """The slot holding ``key``, or -1."""
    mask = len(used) - 1
    slot = _home(key, mask)
    while used[slot]:
        if slots[slot, 0] == key:
            return slot
        slot = (slot + 1) & mask
    return -1


@kernel
def _remove(slots: Slots, used: Used, slot: int) -> None:  # pragma: no cover - compiled
    """Empty ``slot``, shifting back the entries of its probe run that may take it."""
    mask = len(used) - 1
    hole = slot
    at = slot
    while True:
        at = (at + 1) & mask
        if not used[at]:
            break
        # The entry at ``at`` may fill the hole if the hole lies on its probe path,
        # i.e. its home is no nearer to ``at`` than the hole is.
        if ((at - _home(slots[at, 0], mask)) & mask) >= ((at - hole) & mask):
            slots[hole, 0] = slots[at, 0]
            slots[hole, 1] = slots[at, 1]
            hole = at
    used[hole] = False


@kernel
def _put_many(  # pragma: no cover - compiled
    slots: Slots, used: Used, keys: I64, values: I64
) -> int:
    """Set each key in order (the table has room); the number of keys added."""
    mask = len(used) - 1
    added = 0
    for i in range(len(keys)):
        key = keys[i]
        slot = _home(key, mask)
        while used[slot] and slots[slot, 0] != key:
            slot = (slot + 1) & mask
        if not used[slot]:
            used[slot] = True
            slots[slot, 0] = key
            added += 1
        slots[slot, 1] = values[i]
    return added


@kernel
def _rehash(  # pragma: no cover - compiled
    old: Slots, old_used: Used, slots: Slots, used: Used
) -> None:
    """Insert every entry of the old table into the new (empty, larger) one."""
    mask = len(used) - 1
    for i in range(len(old_used)):
        if old_used[i]:
            slot = _home(old[i, 0], mask)
            while used[slot]:
                slot = (slot + 1) & mask
            used[slot] = True
            slots[slot, 0] = old[i, 0]
            slots[slot, 1] = old[i, 1]


@kernel
def _get_many(  # pragma: no cover - compiled
    slots: Slots, used: Used, keys: I64, default: int
) -> I64:
    out = np.empty(len(keys), np.int64)
    for i in range(len(keys)):
        slot = _find(slots, used, keys[i])
        out[i] = default if slot < 0 else slots[slot, 1]
    return out


@kernel
def _pop_many(  # pragma: no cover - compiled
    slots: Slots, used: Used, keys: I64, default: int, out: I64
) -> int:
    """Fill ``out`` with each key's value (removing it) or ``default``; the number removed."""
    removed = 0
    for i in range(len(keys)):
        slot = _find(slots, used, keys[i])
        if slot < 0:
            out[i] = default
        else:
            out[i] = slots[slot, 1]
            _remove(slots, used, slot)
            removed += 1
    return removed


@kernel
def _delete_matching(  # pragma: no cover - compiled
    slots: Slots, used: Used, keys: I64, values: I64
) -> int:
    removed = 0
    for i in range(len(keys)):
        slot = _find(slots, used, keys[i])
        if slot >= 0 and slots[slot, 1] == values[i]:
            _remove(slots, used, slot)
            removed += 1
    return removed
