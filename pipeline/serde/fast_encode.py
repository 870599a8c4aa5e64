"""Vectorized Avro encoding of whole batches: Decision, Transaction and Label.

The scorer writes one Decision per transaction, so encoding sits on the hot
path. fastavro's record writer costs several microseconds per record; here a
batch is laid out as a ``rows x bytes`` matrix instead: zigzag varints are
computed for a whole column at once, doubles are the column's little-endian
bytes, strings that are constant for the batch are encoded once. Varint slots
are as wide as the widest value in the batch; a mask drops the unused bytes and
the packed buffer is cut into one payload per row. The few rows with a
variable-length part (reason codes) are patched afterwards.

The output is byte-identical to fastavro's ``schemaless_writer`` behind the
Confluent header. Each encoder is written for one wire layout, pinned by the
schema fingerprint in :data:`LAYOUT_FINGERPRINTS`; :func:`schema_id_for`
refuses a codec whose schema has another layout, so an evolved schema fails
loudly instead of producing wrong bytes.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from pipeline.serde.catalog import RecordName, fingerprint
from pipeline.serde.codec import RecordCodec
from pipeline.serde.errors import EncodeError, SchemaError
from pipeline.serde.framing import frame_header

LAYOUT_FINGERPRINTS: Final[dict[str, str]] = {
    RecordName.DECISION: "9a41a307dafa82a1",
    RecordName.TRANSACTION: "6598a897679d7e1c",
    RecordName.LABEL: "b0174d143d2b5ee6",
}
"""Schema fingerprint (catalog :func:`fingerprint`) each encoder here writes."""

ACTION_SYMBOLS: Final = ("APPROVE", "REVIEW", "DECLINE")
"""Decision ``action`` enum symbols; the encoder takes their codes 0, 1, 2."""

Reason: TypeAlias = tuple[str, float, str]
"""One reason code: (feature, contribution to the margin, human-readable text)."""

Bytes2D = npt.NDArray[np.uint8]
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_NULL: Final = b"\x00"
_EMPTY_ARRAY: Final = b"\x00"
_DOUBLE = struct.Struct("<d")


def schema_id_for(codec: RecordCodec) -> int:
    """The schema id to frame ``codec``'s records with, once its layout is checked.

    Raises :class:`SchemaError` when the codec's writer schema is not the one
    the fast encoder of that record was written for.
    """
    expected = LAYOUT_FINGERPRINTS.get(codec.name)
    if expected is None:
        raise SchemaError(f"no fast encoder for {codec.name}")
    actual = fingerprint(codec.writer.parsed)
    if actual != expected:
        raise SchemaError(
            f"fast {codec.name} encoder writes layout {expected}, the schema is {actual}; "
            "update pipeline/serde/fast_encode.py for the new schema"
        )
    return codec.schema_id


# --- scalar pieces ----------------------------------------------------------


def long_bytes(value: int) -> bytes:
    """One Avro ``long``/``int``: zigzag, then a little-endian base-128 varint."""
    zigzag = ((value << 1) ^ (value >> 63)) & 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def string_bytes(text: str) -> bytes:
    """One Avro ``string``: byte length, then UTF-8."""
    if not isinstance(text, str):
        raise EncodeError(f"expected a string, got {type(text).__name__}")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"string is not encodable as UTF-8: {exc}") from None
    return long_bytes(len(data)) + data


def reasons_bytes(reasons: Sequence[Reason], strings: dict[str, bytes] | None = None) -> bytes:
    """An Avro array of ReasonCode records (one block, then the end marker).

    ``strings`` caches encoded strings across calls (feature names repeat).
    """
    if not reasons:
        return _EMPTY_ARRAY
    cache = {} if strings is None else strings
    parts = [long_bytes(len(reasons))]
    for feature, contribution, text in reasons:
        name = cache.get(feature)
        if name is None:
            name = cache[feature] = string_bytes(feature)
        words = cache.get(text)
        if words is None:
            words = cache[text] = string_bytes(text)
        parts += (name, _DOUBLE.pack(contribution), words)
    parts.append(_EMPTY_ARRAY)
    return b"".join(parts)


# --- column pieces ------------------------------------------------------------


def zigzag_varints(values: npt.NDArray[np.int64]) -> tuple[Bytes2D, npt.NDArray[np.int64]]:
    """Varints of a whole column: a ``rows x slot`` byte matrix and each row's length.

    Row ``i`` holds its varint in its first ``lengths[i]`` bytes; ``slot`` is the
    longest length in the column.
    """
    signed = np.asarray(values, dtype=np.int64)
    zigzag = ((signed << 1) ^ (signed >> 63)).view(np.uint64)
    if not len(zigzag):
        return np.zeros((0, 1), np.uint8), np.zeros(0, np.int64)
    slot = max(1, (int(zigzag.max()).bit_length() + 6) // 7)
    if slot == 1:
        return zigzag.astype(np.uint8).reshape(-1, 1), np.ones(len(zigzag), np.int64)
    thresholds = np.left_shift(np.uint64(1), _SEVEN[1:slot])
    lengths = 1 + (zigzag[:, None] >= thresholds).sum(axis=1, dtype=np.int64)
    matrix = ((zigzag[:, None] >> _SEVEN[:slot]) & np.uint64(0x7F)).astype(np.uint8)
    matrix |= (_POSITIONS[:slot] < (lengths - 1)[:, None]).view(np.uint8) << np.uint8(7)
    return matrix, lengths


_SEVEN = np.arange(10, dtype=np.uint64) * np.uint64(7)
_POSITIONS = np.arange(10, dtype=np.int64)


def double_bytes(values: npt.ArrayLike, size: int) -> Bytes2D:
    """A column of Avro ``double`` as a ``rows x 8`` byte matrix."""
    column = np.ascontiguousarray(np.broadcast_to(np.asarray(values), (size,)), dtype="<f8")
    return column.view(np.uint8).reshape(size, 8)


class RowPacker:
    """Builds the payloads of a batch piece by piece, left to right.

    Pieces are constants (same bytes in every row), fixed-width byte matrices,
    varint columns, and sparse parts (a default in most rows, other bytes in a
    few). :meth:`pack` returns one ``bytes`` per row.

    Rows are packed in groups of equal varint lengths: within a group every
    piece has one width, so the group is one dense matrix, filled by slices
    and cut at a fixed stride. A batch has few groups (ids of similar size).
    """

    def __init__(self, size: int, header: bytes = b"") -> None:
        self.size = size
        self._blocks: list[Bytes2D | bytes] = []
        self._varints: dict[int, npt.NDArray[np.int64]] = {}  # block index -> lengths
        self._sparse: dict[int, dict[int, bytes]] = {}  # block index -> row -> bytes
        self._pending = bytearray(header)

    def constant(self, data: bytes) -> None:
        self._pending += data

    def fixed(self, matrix: Bytes2D) -> None:
        self._flush()
        self._blocks.append(matrix)

    def double(self, values: npt.ArrayLike) -> None:
        """A ``double`` column, or one value for every row."""
        if np.ndim(values) == 0:
            self.constant(_DOUBLE.pack(float(values)))  # type: ignore[arg-type]
        else:
            self.fixed(double_bytes(values, self.size))

    def long(self, values: npt.ArrayLike, name: str, *, int32: bool = False) -> None:
        """A ``long`` (or ``int``) column, or one value for every row."""
        column = _integers(values, name, self.size)
        if int32 and self.size and (column.min() < _INT32_MIN or column.max() > _INT32_MAX):
            raise EncodeError(f"{name} does not fit an Avro int")
        if np.ndim(values) == 0:
            if self.size:
                self.constant(long_bytes(int(column[0])))
            return
        self._varint_block(*zigzag_varints(column))

    def nullable_long(
        self, values: npt.ArrayLike, present: npt.NDArray[np.bool_], name: str
    ) -> None:
        """A ``["null", long]`` union column: null where ``present`` is false."""
        column = _integers(values, name, self.size)
        self.fixed(np.where(present, 2, 0).astype(np.uint8).reshape(self.size, 1))
        matrix, lengths = zigzag_varints(column)
        self._varint_block(matrix, np.where(present, lengths, 0))

    def sparse(self, default: bytes, rows: Mapping[int, bytes]) -> None:
        """``default`` in every row except those in ``rows``."""
        if not rows:
            self.constant(default)
            return
        self._flush()
        self._sparse[len(self._blocks)] = dict(rows)
        self._blocks.append(default)

    def pack(self) -> list[bytes]:
        """The payloads, each starting with the header given at construction."""
        self._flush()
        if self.size == 0:
            return []
        # A block whose lengths are all equal is fixed width; the others key the groups.
        for index, lengths in list(self._varints.items()):
            if int(lengths.min()) == int(lengths.max()):
                block = self._blocks[index]
                assert not isinstance(block, bytes)
                self._blocks[index] = block[:, : int(lengths[0])]
                del self._varints[index]
        if not self._varints:
            out = self._pack_group(None, {})
        else:
            key = np.zeros(self.size, np.int64)
            for lengths in self._varints.values():
                key = key * 11 + lengths
            if int(key.min()) == int(key.max()):
                out = self._pack_group(None, {i: int(u[0]) for i, u in self._varints.items()})
            else:
                out = self._pack_groups(key)
        return out

    def _pack_groups(self, key: npt.NDArray[np.int64]) -> list[bytes]:
        order = np.argsort(key, kind="stable")
        bounds = np.flatnonzero(np.diff(key[order])) + 1
        grouped: list[bytes] = []
        for rows in np.split(order, bounds):
            first = int(rows[0])
            grouped += self._pack_group(rows, {i: int(u[first]) for i, u in self._varints.items()})
        # grouped[j] is row order[j]; pick them back in row order (itemgetter runs in C).
        where = np.empty(self.size, np.intp)
        where[order] = np.arange(self.size)
        return list(operator.itemgetter(*where.tolist())(grouped))

    def _pack_group(self, rows: npt.NDArray[np.intp] | None, used: dict[int, int]) -> list[bytes]:
        """Payloads of ``rows`` (all rows when ``None``), whose varints have lengths ``used``."""
        count = self.size if rows is None else len(rows)
        widths = [
            len(block) if isinstance(block, bytes) else used.get(index, int(block.shape[1]))
            for index, block in enumerate(self._blocks)
        ]
        stride = sum(widths)
        matrix = np.empty((count, stride), np.uint8)
        at = 0
        offsets: dict[int, int] = {}
        for index, (block, width) in enumerate(zip(self._blocks, widths, strict=True)):
            offsets[index] = at
            if isinstance(block, bytes):
                matrix[:, at : at + width] = np.frombuffer(block, np.uint8)
            elif width:
                part = block if rows is None else block[rows]
                matrix[:, at : at + width] = part[:, :width]
            at += width
        packed = matrix.tobytes()
        payloads = [packed[start : start + stride] for start in range(0, len(packed), stride)]
        for index, replaced in self._sparse.items():
            where, width = offsets[index], widths[index]
            for position, row in self._positions(rows, replaced):
                payload = payloads[position]
                payloads[position] = payload[:where] + replaced[row] + payload[where + width :]
        return payloads

    @staticmethod
    def _positions(
        rows: npt.NDArray[np.intp] | None, replaced: Mapping[int, bytes]
    ) -> list[tuple[int, int]]:
        """(position in the group, row) of the replaced rows that are in the group."""
        if rows is None:
            return [(row, row) for row in replaced]
        wanted = np.fromiter(replaced, np.int64, len(replaced))
        found = np.minimum(np.searchsorted(rows, wanted), len(rows) - 1)  # rows are sorted
        hit = rows[found] == wanted
        return list(zip(found[hit].tolist(), wanted[hit].tolist(), strict=True))

    def _varint_block(self, matrix: Bytes2D, lengths: npt.NDArray[np.int64]) -> None:
        self._flush()
        self._varints[len(self._blocks)] = lengths
        self._blocks.append(matrix)

    def _flush(self) -> None:
        if self._pending:
            self._blocks.append(bytes(self._pending))
            self._pending = bytearray()


def _integers(values: npt.ArrayLike, name: str, size: int) -> npt.NDArray[np.int64]:
    array = np.asarray(values)
    if array.dtype.kind not in "iub":
        raise EncodeError(f"{name} must be integers, got dtype {array.dtype}")
    if array.dtype.kind == "u" and len(array.ravel()) and int(array.max()) > np.iinfo(np.int64).max:
        raise EncodeError(f"{name} does not fit an Avro long")
    if array.ndim not in (0, 1) or (array.ndim == 1 and len(array) != size):
        raise EncodeError(f"{name} has shape {array.shape}, expected ({size},)")
    return np.broadcast_to(array.astype(np.int64, copy=False), (size,))


def _column_size(name: str, values: npt.ArrayLike) -> int:
    array = np.asarray(values)
    if array.ndim != 1:
        raise EncodeError(f"{name} must be one-dimensional, got shape {array.shape}")
    return len(array)


# --- records ------------------------------------------------------------------


def encode_decisions(
    *,
    transaction_id: npt.ArrayLike,
    card_id: npt.ArrayLike,
    terminal_id: npt.ArrayLike,
    timestamp: npt.ArrayLike,
    amount: npt.ArrayLike,
    score: npt.ArrayLike,
    action: npt.ArrayLike,
    features: npt.ArrayLike,
    decided_at: npt.ArrayLike,
    processing_ms: npt.ArrayLike,
    source_partition: npt.ArrayLike,
    source_offset: npt.ArrayLike,
    model_name: str,
    model_version: str,
    schema_id: int,
    rollout_arm: str = "champion",
    feature_set_version: str = "",
    reasons: Mapping[int, Sequence[Reason]] | None = None,
    challenger_version: str | None = None,
    challenger_score: npt.ArrayLike | None = None,
) -> list[bytes]:
    """Framed Decision payloads for a batch, one per row, in order.

    Columns have one value per row; ``decided_at``, ``processing_ms``,
    ``source_partition``, ``source_offset`` and ``challenger_score`` may also be
    one value for the whole batch. ``action`` holds codes 0/1/2 (APPROVE,
    REVIEW, DECLINE); ``features`` is a ``rows x features`` matrix (float32 is
    widened exactly). ``reasons`` maps a row index to its reason codes (rows
    not in it get none). The model, arm and feature-set names are per batch.
    """
    size = _column_size("transaction_id", transaction_id)
    matrix = np.asarray(features)
    if matrix.ndim != 2 or matrix.shape[0] != size:
        raise EncodeError(f"features has shape {matrix.shape}, expected ({size}, n)")
    codes = np.asarray(action)
    if codes.shape != (size,) or codes.dtype.kind not in "iu":
        raise EncodeError(f"action must be {size} integer codes, got {codes.dtype} {codes.shape}")
    if size and (int(codes.min()) < 0 or int(codes.max()) > 2):
        raise EncodeError("action codes must be 0 (APPROVE), 1 (REVIEW) or 2 (DECLINE)")
    rows = RowPacker(size, frame_header(schema_id))
    for name, column in (
        ("transaction_id", transaction_id),
        ("card_id", card_id),
        ("terminal_id", terminal_id),
        ("timestamp", timestamp),
    ):
        if np.ndim(column) != 1:
            raise EncodeError(f"{name} must have one value per row")
        rows.long(column, name)
    rows.fixed(_joined_doubles(size, amount, score))
    rows.fixed((codes.astype(np.uint8) << np.uint8(1)).reshape(size, 1))  # enum index, as a varint
    rows.constant(
        string_bytes(model_name) + string_bytes(model_version) + string_bytes(rollout_arm)
    )
    rows.sparse(_EMPTY_ARRAY, _encoded_reasons(reasons, size))
    rows.constant(string_bytes(feature_set_version))
    width = matrix.shape[1]
    if width:
        rows.constant(long_bytes(width))
        rows.fixed(
            np.ascontiguousarray(matrix, dtype="<f8").view(np.uint8).reshape(size, 8 * width)
        )
        rows.constant(_EMPTY_ARRAY)
    else:
        rows.constant(_EMPTY_ARRAY)
    rows.constant(
        _NULL if challenger_version is None else b"\x02" + string_bytes(challenger_version)
    )
    if challenger_score is None:
        rows.constant(_NULL)
    else:
        rows.constant(b"\x02")
        rows.double(challenger_score)
    rows.long(decided_at, "decided_at")
    rows.double(processing_ms)
    rows.long(source_partition, "source_partition", int32=True)
    rows.long(source_offset, "source_offset")
    return rows.pack()


def encode_transactions(
    *,
    transaction_id: npt.ArrayLike,
    timestamp: npt.ArrayLike,
    card_id: npt.ArrayLike,
    terminal_id: npt.ArrayLike,
    amount: npt.ArrayLike,
    schema_id: int,
) -> list[bytes]:
    """Framed Transaction payloads; the optional fields take their defaults."""
    size = _column_size("transaction_id", transaction_id)
    rows = RowPacker(size, frame_header(schema_id))
    rows.long(transaction_id, "transaction_id")
    rows.long(timestamp, "timestamp")
    rows.long(card_id, "card_id")
    rows.long(terminal_id, "terminal_id")
    rows.double(_sized(amount, size, "amount"))
    rows.constant(string_bytes("EUR") + _NULL * 3)  # currency, channel, merchant_id, category
    return rows.pack()


def encode_labels(
    *,
    transaction_id: npt.ArrayLike,
    card_id: npt.ArrayLike,
    is_fraud: npt.ArrayLike,
    label_timestamp: npt.ArrayLike,
    schema_id: int,
    source: str = "unknown",
    fraud_scenario: npt.ArrayLike | None = None,
) -> list[bytes]:
    """Framed Label payloads; ``fraud_scenario`` 0 (or absent) is written as null."""
    size = _column_size("transaction_id", transaction_id)
    flags = _sized(is_fraud, size, "is_fraud")
    if size and not np.isin(flags, (0, 1)).all():
        raise EncodeError("is_fraud must be 0 or 1")
    rows = RowPacker(size, frame_header(schema_id))
    rows.long(transaction_id, "transaction_id")
    rows.long(card_id, "card_id")
    rows.fixed(flags.astype(np.uint8).reshape(size, 1))
    rows.long(label_timestamp, "label_timestamp")
    rows.constant(string_bytes(source))
    if fraud_scenario is None:
        rows.constant(_NULL)
    else:
        scenario = _integers(fraud_scenario, "fraud_scenario", size)
        if size and (scenario.min() < 0 or scenario.max() > _INT32_MAX):
            raise EncodeError("fraud_scenario must be a non-negative int")
        rows.nullable_long(scenario, scenario > 0, "fraud_scenario")
    return rows.pack()


def _sized(values: npt.ArrayLike, size: int, name: str) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.shape != (size,):
        raise EncodeError(f"{name} has shape {array.shape}, expected ({size},)")
    return array


def _joined_doubles(size: int, *columns: npt.ArrayLike) -> Bytes2D:
    """Adjacent double columns as one ``rows x 8k`` byte matrix."""
    joined = np.empty((size, len(columns)), "<f8")
    for k, column in enumerate(columns):
        array = np.asarray(column)
        if array.ndim != 1 or len(array) != size:
            raise EncodeError(f"a double column has shape {array.shape}, expected ({size},)")
        joined[:, k] = array
    return joined.view(np.uint8).reshape(size, 8 * len(columns))


def _encoded_reasons(reasons: Mapping[int, Sequence[Reason]] | None, size: int) -> dict[int, bytes]:
    encoded: dict[int, bytes] = {}
    strings: dict[str, bytes] = {}
    for row, codes in (reasons or {}).items():
        index = int(row)
        if not 0 <= index < size:
            raise EncodeError(f"reasons for row {index}, outside the batch of {size}")
        if codes:
            try:
                encoded[index] = reasons_bytes(codes, strings)
            except (TypeError, ValueError, struct.error) as exc:
                raise EncodeError(f"reasons of row {index} do not fit: {exc}") from exc
    return encoded
