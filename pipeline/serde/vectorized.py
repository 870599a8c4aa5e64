"""Vectorized Avro decoding of flat records framed in a batch.

Reads the five core Transaction fields of many payloads at once with numpy:
varints, doubles and skipped strings are decoded across the whole batch. Only
layouts made of ``long``, ``double``, ``string`` and ``["null", string|long|double]``
are handled. A row is accepted only when it is certainly valid Avro (every
byte consumed, ASCII strings, canonical unions); anything else is left to the
record decoder, so results are identical to record-by-record decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.serde.framing import HEADER_SIZE, MAGIC_BYTE

_PAD = 16
_KINDS = {"long", "double", "string"}

Layout = tuple[tuple[str, str, bool], ...]
"""(field name, kind, nullable) per field, in writer order."""

IntArray = npt.NDArray[np.int64]


def flat_layout(parsed_schema: Any) -> Layout | None:
    """The layout of a flat record schema, or ``None`` when this module cannot read it."""
    layout = []
    for field in parsed_schema["fields"]:
        kind, nullable = field["type"], False
        if isinstance(kind, list):
            if len(kind) != 2 or kind[0] != "null":
                return None
            kind, nullable = kind[1], True
        if kind not in _KINDS:
            return None
        layout.append((str(field["name"]), str(kind), nullable))
    return tuple(layout)


class FlatBatch:
    """Payloads joined into one buffer, with per-row positions."""

    def __init__(self, payloads: Sequence[bytes]) -> None:
        size = len(payloads)
        self.lengths = np.fromiter(map(len, payloads), np.int64, size)
        self.starts = np.zeros(size, np.int64)
        np.cumsum(self.lengths[:-1], out=self.starts[1:])
        self.ends = self.starts + self.lengths
        self.buffer = np.frombuffer(b"".join(payloads) + bytes(_PAD), np.uint8)
        self._limit = len(self.buffer) - _PAD
        self._non_ascii: IntArray | None = None

    def schema_ids(self) -> IntArray:
        """Schema id per row; -1 where the frame is too short or the magic byte wrong."""
        starts = np.minimum(self.starts, self._limit)
        head = self.buffer[starts[:, None] + np.arange(HEADER_SIZE)].astype(np.int64)
        ids = (head[:, 1] << 24) | (head[:, 2] << 16) | (head[:, 3] << 8) | head[:, 4]
        framed = (self.lengths >= HEADER_SIZE) & (head[:, 0] == MAGIC_BYTE)
        return np.where(framed, ids, -1)

    def read(
        self, layout: Layout, rows: IntArray, wanted: Sequence[str]
    ) -> tuple[dict[str, npt.NDArray[Any]], npt.NDArray[np.bool_]]:
        """Decode ``wanted`` fields of ``rows``; also the mask of rows read with certainty."""
        pos = self.starts[rows] + HEADER_SIZE
        ends = self.ends[rows]
        ok = np.ones(len(rows), np.bool_)
        out: dict[str, npt.NDArray[Any]] = {}
        for name, kind, nullable in layout:
            present = ok.copy()
            if nullable:
                branch, used, valid = self._varint(pos)
                ok &= valid & ((branch == 0) | (branch == 1))
                pos = pos + used
                present = branch == 1
            if kind == "long":
                value, used, valid = self._varint(pos)
                ok &= valid | ~present
                pos = pos + np.where(present, used, 0)
            elif kind == "double":
                index = np.minimum(pos, self._limit)[:, None] + np.arange(8)
                value = self.buffer[index].copy().view("<f8").ravel()
                pos = pos + np.where(present, 8, 0)
            else:  # string: skip it, refuse non-ASCII so UTF-8 checks stay with fastavro
                length, used, valid = self._varint(pos)
                ok &= (valid & (length >= 0)) | ~present
                length = np.where(
                    present & valid & (length >= 0), np.minimum(length, self._limit), 0
                )
                body = np.minimum(pos + used, self._limit)
                stop = np.minimum(body + length, self._limit)
                non_ascii = self._non_ascii_count()
                ok &= (non_ascii[stop] - non_ascii[body] == 0) | ~present
                pos = pos + np.where(present, used + length, 0)
            ok &= pos <= ends
            if name in wanted:
                out[name] = value
        ok &= pos == ends
        return out, ok

    def _varint(self, pos: IntArray) -> tuple[IntArray, IntArray, npt.NDArray[np.bool_]]:
        """Zigzag varints at ``pos``: values, byte counts, and which are well-formed.

        Loops over byte positions, not rows, and stops once every varint has
        ended: most are one or two bytes long.
        """
        at = np.minimum(pos, self._limit)
        raw = np.zeros(len(pos), np.uint64)
        used = np.zeros(len(pos), np.int64)
        active = np.ones(len(pos), np.bool_)
        valid = np.zeros(len(pos), np.bool_)
        for k in range(10):
            byte = self.buffer[at + k]
            raw |= np.where(active, byte & 0x7F, 0).astype(np.uint64) << np.uint64(7 * k)
            ended = active & (byte < 0x80)
            used[ended] = k + 1
            valid |= ended & ((k < 9) | (byte <= 1))  # a 10th byte may only hold bit 63
            active &= ~ended
            if not active.any():
                break
        value = (raw >> np.uint64(1)).astype(np.int64) ^ -(raw & np.uint64(1)).astype(np.int64)
        return value, used, valid

    def _non_ascii_count(self) -> IntArray:
        if self._non_ascii is None:
            counts = np.zeros(len(self.buffer) + 1, np.int64)
            np.cumsum(self.buffer >= 0x80, out=counts[1:])
            self._non_ascii = counts
        return self._non_ascii
