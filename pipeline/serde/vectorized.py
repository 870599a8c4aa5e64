"""Compiled Avro decoding of flat records framed in a batch.

Reads the fixed fields of many payloads at once (the core fields of a
Transaction or a Label): the payloads are joined into one buffer and a numba
kernel walks each row's bytes once, field by field. Only layouts made of
``long``, ``int``, ``double``, ``boolean``, ``string`` and ``["null", X]`` of
these are handled. A row is accepted only when it is certainly valid Avro
(every byte consumed, well-formed varints, canonical union branches, string
lengths inside the payload, ASCII strings so that UTF-8 checks stay with
fastavro, booleans written as 0 or 1, ints inside 32 bits); anything else is
left to the record decoder, so results are identical to record-by-record
decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from pipeline.jit import kernel
from pipeline.serde.framing import HEADER_SIZE, MAGIC_BYTE

_LONG: Final = 0
_DOUBLE: Final = 1
_STRING: Final = 2
_BOOLEAN: Final = 3
_INT: Final = 4
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_KIND_CODES: Final = {
    "long": _LONG,
    "double": _DOUBLE,
    "string": _STRING,
    "boolean": _BOOLEAN,
    "int": _INT,
}
"""Field kinds this module reads, with their codes in the kernel."""

Layout = tuple[tuple[str, str, bool], ...]
"""(field name, kind, nullable) per field, in writer order."""

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def flat_layout(parsed_schema: Any) -> Layout | None:
    """The layout of a flat record schema, or ``None`` when this module cannot read it."""
    layout = []
    for field in parsed_schema["fields"]:
        kind, nullable = field["type"], False
        if isinstance(kind, list):
            if len(kind) != 2 or kind[0] != "null":
                return None
            kind, nullable = kind[1], True
        if kind not in _KIND_CODES:
            return None
        layout.append((str(field["name"]), str(kind), nullable))
    return tuple(layout)


class FlatBatch:
    """Payloads joined into one buffer, with per-row positions and schema ids."""

    def __init__(self, payloads: Sequence[bytes]) -> None:
        size = len(payloads)
        lengths = np.fromiter(map(len, payloads), np.int64, size)
        self.buffer = np.frombuffer(b"".join(payloads), np.uint8)
        self.offsets = np.empty(size + 1, np.int64)
        """Row ``i`` is ``buffer[offsets[i]:offsets[i + 1]]``."""
        self._ids = np.empty(size, np.int64)
        _frame(self.buffer, lengths, self.offsets, self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def schema_ids(self) -> IntArray:
        """Schema id per row; -1 where the frame is too short or the magic byte wrong."""
        return self._ids.copy()

    def distinct_ids(self) -> list[int]:
        """The schema ids of well-framed rows, each once, in order of first appearance."""
        return list(_distinct(self._ids).tolist())

    def read(
        self, layout: Layout, rows: IntArray, wanted: Sequence[str]
    ) -> tuple[dict[str, npt.NDArray[Any]], BoolArray]:
        """Decode ``wanted`` fields of ``rows``; also the mask of rows read with certainty.

        Doubles come as float64, booleans as bool, the other kinds as int64.
        Values of rows outside the mask, and of null fields, are unspecified.
        """
        wanted = tuple(wanted)
        values = np.zeros((len(wanted), len(self)), np.int64)
        good = np.zeros(len(self), np.bool_)
        chosen = np.zeros(len(self), np.bool_)
        chosen[rows] = True
        self.read_into(layout, chosen, wanted, values, good)
        kinds = {name: kind for name, kind, _ in layout}
        out: dict[str, npt.NDArray[Any]] = {}
        for k, name in enumerate(wanted):
            if name not in kinds:
                continue
            column = values[k, rows]
            if kinds[name] == "double":
                out[name] = column.view(np.float64)
            elif kinds[name] == "boolean":
                out[name] = column != 0
            else:
                out[name] = column
        return out, good[rows]

    def read_into(
        self,
        layout: Layout,
        chosen: BoolArray,
        wanted: Sequence[str],
        values: IntArray,
        good: BoolArray,
    ) -> None:
        """Decode the ``chosen`` rows in place, the hot path's :meth:`read`.

        ``values[k, row]`` gets field ``wanted[k]`` (a double as its IEEE bits:
        ``values[k].view(np.float64)``; a boolean as 0 or 1); ``good[row]``
        whether the row was read with certainty. Rows not chosen are left as
        they are. ``chosen`` and ``good`` are C-contiguous bool arrays of the
        batch's size, ``values`` a C-contiguous ``len(wanted) x size`` int64
        matrix (other array layouts cost a compilation). Values of rows not
        good, and of null fields, are unspecified.
        """
        plan = _plan(layout, tuple(wanted))
        _read_rows(
            self.buffer,
            self.offsets,
            chosen,
            plan.kinds,
            plan.nullable,
            plan.slots,
            values,
            good,
        )


class _Plan:
    """A layout as the kernel takes it: small int arrays, one entry per field."""

    def __init__(self, layout: Layout, wanted: tuple[str, ...]) -> None:
        self.kinds = np.array([_KIND_CODES[kind] for _, kind, _ in layout], np.int64)
        self.nullable = np.array([nullable for _, _, nullable in layout], np.bool_)
        self.slots = np.array(
            [wanted.index(name) if name in wanted else -1 for name, _, _ in layout], np.int64
        )


@lru_cache(maxsize=64)
def _plan(layout: Layout, wanted: tuple[str, ...]) -> _Plan:
    return _Plan(layout, wanted)


def warm_up() -> None:
    """Compile (or load from numba's cache) the decoding kernels, so no batch pays for it.

    Reads a tiny batch through :class:`FlatBatch` with the argument types of
    the hot path, through every field kind.
    """
    layout: Layout = (
        ("id", "long", False),
        ("x", "double", False),
        ("s", "string", True),
        ("flag", "boolean", False),
        ("n", "int", True),
    )
    payload = bytes([MAGIC_BYTE, 0, 0, 0, 1, 2]) + bytes(8) + b"\x02\x02ab\x01\x02\x06"
    batch = FlatBatch([payload, payload[:-1], b""])
    for schema_id in batch.distinct_ids():
        values = np.zeros((2, len(batch)), np.int64)
        good = np.zeros(len(batch), np.bool_)
        batch.read_into(layout, batch.schema_ids() == schema_id, ("id", "x"), values, good)


# --- kernels ------------------------------------------------------------------


@kernel
def _frame(  # pragma: no cover - compiled
    buffer: npt.NDArray[np.uint8], lengths: IntArray, offsets: IntArray, ids: IntArray
) -> None:
    """Row offsets into ``offsets`` (one more than rows) and Confluent schema ids into
    ``ids``: -1 where the frame is too short or its magic byte wrong."""
    offsets[0] = 0
    for row in range(len(lengths)):
        at = offsets[row]
        offsets[row + 1] = at + lengths[row]
        if lengths[row] < HEADER_SIZE or buffer[at] != MAGIC_BYTE:
            ids[row] = -1
        else:
            ids[row] = (
                (np.int64(buffer[at + 1]) << 24)
                | (np.int64(buffer[at + 2]) << 16)
                | (np.int64(buffer[at + 3]) << 8)
                | np.int64(buffer[at + 4])
            )


@kernel
def _distinct(ids: IntArray) -> IntArray:  # pragma: no cover - compiled
    """The non-negative values of ``ids``, each once, in order of first appearance."""
    found = np.empty(len(ids), np.int64)
    count = 0
    last = -1
    for value in ids:
        if value < 0 or value == last:
            continue
        seen = False
        for k in range(count):
            if found[k] == value:
                seen = True
                break
        if not seen:
            found[count] = value
            count += 1
        last = value
    return found[:count]


@kernel
def _varint(  # pragma: no cover - compiled
    buffer: npt.NDArray[np.uint8], pos: int, end: int
) -> tuple[np.int64, int]:
    """The zigzag varint at ``pos`` and the position after it; -1 for that position
    when it is malformed (over ten bytes, a tenth byte beyond bit 63) or not over by ``end``.
    """
    raw = np.uint64(0)
    for k in range(10):
        if pos + k >= end:
            return np.int64(0), -1
        byte = buffer[pos + k]
        raw |= np.uint64(byte & 0x7F) << np.uint64(7 * k)
        if byte < 0x80:
            if k == 9 and byte > 1:
                return np.int64(0), -1
            value = np.int64(raw >> np.uint64(1)) ^ -np.int64(raw & np.uint64(1))
            return value, pos + k + 1
    return np.int64(0), -1


@kernel
def _read_rows(  # pragma: no cover - compiled
    buffer: npt.NDArray[np.uint8],
    offsets: IntArray,
    chosen: BoolArray,
    kinds: IntArray,
    nullable: BoolArray,
    slots: IntArray,
    values: IntArray,
    good: BoolArray,
) -> None:
    """:meth:`FlatBatch.read_into`: every chosen row's bytes, walked once.

    ``values[slots[f], row]`` receives field ``f`` (skipped where ``slots[f]``
    is -1): longs and ints as they are, doubles as their IEEE bits, booleans
    as 0 or 1. A row is good when every field is well formed and its last byte
    ends the last field.
    """
    for row in range(len(chosen)):
        if not chosen[row]:
            continue
        pos = offsets[row] + HEADER_SIZE
        end = offsets[row + 1]
        for f in range(len(kinds)):
            value = np.int64(0)
            present = True
            if nullable[f]:
                branch, pos = _varint(buffer, pos, end)
                if pos < 0 or (branch != 0 and branch != 1):
                    pos = -1
                    break
                present = branch == 1
            if present:
                kind = kinds[f]
                # Boolean and int first: of the orders measured, the one that slows the others least.
                if kind > _STRING:
                    if kind == _BOOLEAN:  # 0 or 1; fastavro reads other bytes as true: left to it
                        if pos < end and buffer[pos] <= 1:
                            value = np.int64(buffer[pos])
                            pos += 1
                        else:
                            pos = -1
                    else:  # int: a long that must fit 32 bits, which fastavro does not check
                        value, pos = _varint(buffer, pos, end)
                        if value < _INT32_MIN or value > _INT32_MAX:
                            pos = -1
                elif kind == _LONG:
                    value, pos = _varint(buffer, pos, end)
                elif kind == _DOUBLE:
                    if pos + 8 > end:
                        pos = -1
                    else:
                        bits = np.uint64(0)
                        for k in range(8):
                            bits |= np.uint64(buffer[pos + k]) << np.uint64(8 * k)
                        value = np.int64(bits)
                        pos += 8
                else:  # string: skipped; ASCII only, so UTF-8 checks stay with fastavro
                    length, body = _varint(buffer, pos, end)
                    pos = -1
                    if body >= 0 and 0 <= length <= end - body:
                        pos = body + length
                        for k in range(body, pos):
                            if buffer[k] >= 0x80:
                                pos = -1
                                break
                if pos < 0:
                    break
            if slots[f] >= 0:
                values[slots[f], row] = value
        good[row] = pos == end
