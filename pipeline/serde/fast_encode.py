"""Compiled Avro encoding of whole batches: Decision, Alert, Transaction, Label and Outcome.

The scorer writes one Decision per transaction, so encoding sits on the hot
path. fastavro's record writer costs several microseconds per record; here a
batch is described once as a sequence of pieces (constant bytes, fixed-width
columns such as doubles, varint columns, sparse per-row bytes such as reason
codes) and one numba kernel writes every row into one buffer: zigzag varints
are computed per value, strings that are constant for the batch are encoded
once. The buffer is then cut into one payload per row.

The output is byte-identical to fastavro's ``schemaless_writer`` behind the
Confluent header. Each encoder is written for one wire layout, pinned by the
schema fingerprint in :data:`LAYOUT_FINGERPRINTS`; :func:`schema_id_for`
refuses a codec whose schema has another layout, so an evolved schema fails
loudly instead of producing wrong bytes.

The kernels compile on first use; :func:`warm_up` does that (or loads them
from numba's on-disk cache) before the first batch.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from pipeline.jit import kernel
from pipeline.serde.catalog import RecordName, fingerprint
from pipeline.serde.codec import RecordCodec
from pipeline.serde.errors import EncodeError, SchemaError
from pipeline.serde.framing import frame_header

LAYOUT_FINGERPRINTS: Final[dict[str, str]] = {
    RecordName.DECISION: "9a41a307dafa82a1",
    RecordName.ALERT: "5c375e88468f1a78",
    RecordName.TRANSACTION: "6598a897679d7e1c",
    RecordName.LABEL: "b0174d143d2b5ee6",
    RecordName.OUTCOME: "2d1eaad2f76acd03",
    RecordName.MONITOR_STATS: "68c8a5d3469cdb1e",
}
"""Schema fingerprint (catalog :func:`fingerprint`) each encoder here writes."""

ACTION_SYMBOLS: Final = ("APPROVE", "REVIEW", "DECLINE")
"""Decision ``action`` enum symbols; the encoder takes their codes 0, 1, 2."""

SEVERITY_SYMBOLS: Final = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
"""Alert ``severity`` enum symbols; the encoder takes their codes 0-3."""

Reason: TypeAlias = tuple[str, float, str]
"""One reason code: (feature, contribution to the margin, human-readable text)."""

Bytes1D = npt.NDArray[np.uint8]
Bytes2D = npt.NDArray[np.uint8]
Int64Array = npt.NDArray[np.int64]
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


# --- column pieces ------------------------------------------------------------


# Piece kinds of a RowPacker program, one row of (kind, index, start, length) per piece:
_CONSTANT: Final = 0  # constants[start : start + length]
_FIXED: Final = 1  # fixed[row, start : start + length]
_VARINT: Final = 2  # varints[index, row], skipped where masks[start, row] is false (start >= 0)
_SPARSE: Final = 3  # the bytes of sparse_at[index, row], or constants[start : start + length]


class RowPacker:
    """Builds the payloads of a batch piece by piece, left to right.

    Pieces are constants (same bytes in every row), fixed-width columns (byte
    matrices, doubles), varint columns, and sparse parts (a default in most
    rows, other bytes in a few). :meth:`pack` returns one ``bytes`` per row.

    The pieces become a small program, one entry per piece, that a compiled
    kernel runs for every row, writing the rows one after the other into one
    buffer; the buffer is then cut into the payloads.
    """

    def __init__(self, size: int, header: bytes = b"") -> None:
        self.size = size
        self._program: list[tuple[int, int, int, int]] = []
        self._constants = bytearray()
        self._pending = bytearray(header)  # constant bytes not in the program yet
        # (first column, width, values, written as doubles) of each fixed-width column
        self._fixed: list[tuple[int, int, npt.NDArray[Any], bool]] = []
        self._fixed_width = 0
        self._varints: list[npt.NDArray[np.int64]] = []
        self._masks: list[npt.NDArray[np.bool_]] = []
        self._sparse: list[dict[int, bytes]] = []

    def constant(self, data: bytes) -> None:
        self._pending += data

    def fixed(self, matrix: Bytes2D) -> None:
        """A ``rows x width`` byte matrix, row ``i`` in payload ``i``."""
        array = np.asarray(matrix)
        if array.ndim != 2 or array.shape[0] != self.size:
            raise EncodeError(f"a fixed piece has shape {array.shape}, expected ({self.size}, n)")
        self._fixed_piece(array, array.shape[1], doubles=False)

    def double(self, values: npt.ArrayLike) -> None:
        """A ``double`` column, or one value for every row."""
        if np.ndim(values) == 0:
            self.constant(_DOUBLE.pack(float(values)))  # type: ignore[arg-type]
            return
        array = np.asarray(values)
        try:
            column = np.broadcast_to(array, (self.size,))
        except ValueError:
            raise EncodeError(
                f"a double column has shape {array.shape}, expected ({self.size},)"
            ) from None
        self._fixed_piece(column.reshape(self.size, 1), 8, doubles=True)

    def doubles(self, matrix: npt.ArrayLike) -> None:
        """A ``rows x k`` matrix of doubles, row ``i``'s ``k`` values in payload ``i``."""
        array = np.asarray(matrix)
        if array.ndim != 2 or array.shape[0] != self.size:
            raise EncodeError(f"a double matrix has shape {array.shape}, expected ({self.size}, k)")
        self._fixed_piece(array, 8 * array.shape[1], doubles=True)

    def long(self, values: npt.ArrayLike, name: str, *, int32: bool = False) -> None:
        """A ``long`` (or ``int``) column, or one value for every row."""
        column = _integers(values, name, self.size)
        if int32 and self.size and (column.min() < _INT32_MIN or column.max() > _INT32_MAX):
            raise EncodeError(f"{name} does not fit an Avro int")
        if np.ndim(values) == 0:
            if self.size:
                self.constant(long_bytes(int(column[0])))
            return
        self._varint_piece(column, -1)

    def nullable_long(
        self, values: npt.ArrayLike, present: npt.NDArray[np.bool_], name: str
    ) -> None:
        """A ``["null", long]`` union column: null where ``present`` is false."""
        column = _integers(values, name, self.size)
        mask = np.broadcast_to(np.asarray(present, np.bool_), (self.size,))
        self.fixed(np.where(mask, 2, 0).astype(np.uint8).reshape(self.size, 1))
        self._masks.append(mask)
        self._varint_piece(column, len(self._masks) - 1)

    def sparse(self, default: bytes, rows: Mapping[int, bytes]) -> None:
        """``default`` in every row except those in ``rows``."""
        if not rows:
            self.constant(default)
            return
        for row in rows:
            if not 0 <= row < self.size:
                raise EncodeError(f"sparse bytes for row {row}, outside the batch of {self.size}")
        self._flush()
        self._program.append((_SPARSE, len(self._sparse), len(self._constants), len(default)))
        self._constants += default
        self._sparse.append(dict(rows))

    def pack(self) -> list[bytes]:
        """The payloads, each starting with the header given at construction."""
        self._flush()
        size = self.size
        if size == 0:
            return []
        fixed = np.empty((size, self._fixed_width), np.uint8)
        for start, width, values, doubles in self._fixed:
            part = fixed[:, start : start + width]
            (part.view("<f8") if doubles else part)[...] = values
        varints = np.stack(self._varints) if self._varints else np.zeros((0, size), np.int64)
        masks = np.stack(self._masks) if self._masks else np.zeros((0, size), np.bool_)
        sparse_at = np.full((len(self._sparse), size), -1, np.int64)
        chunks: list[bytes] = []
        for index, replaced in enumerate(self._sparse):
            rows = np.fromiter(replaced, np.int64, len(replaced))
            sparse_at[index, rows] = np.arange(len(chunks), len(chunks) + len(rows))
            chunks += replaced.values()
        sparse_offsets = np.zeros(len(chunks) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, chunks), np.int64, len(chunks)), out=sparse_offsets[1:])
        buffer, layout = _pack_rows(
            np.array(self._program, np.int64).reshape(-1, 4),
            np.frombuffer(bytes(self._constants), np.uint8),
            fixed,
            varints,
            masks,
            sparse_at,
            sparse_offsets,
            np.frombuffer(b"".join(chunks), np.uint8),
        )
        # struct cuts the buffer into one bytes per row in C: several times faster than
        # slicing it in a Python loop.
        return list(struct.Struct(layout.tobytes()).unpack(buffer.data))

    def _fixed_piece(self, values: npt.NDArray[Any], width: int, *, doubles: bool) -> None:
        self._flush()
        self._fixed.append((self._fixed_width, width, values, doubles))
        last = self._program[-1] if self._program else None
        if last is not None and last[0] == _FIXED:  # extends the previous fixed piece
            self._program[-1] = (_FIXED, 0, last[2], last[3] + width)
        else:
            self._program.append((_FIXED, 0, self._fixed_width, width))
        self._fixed_width += width

    def _varint_piece(self, column: npt.NDArray[np.int64], mask: int) -> None:
        self._flush()
        self._program.append((_VARINT, len(self._varints), mask, 0))
        self._varints.append(column)

    def _flush(self) -> None:
        if self._pending:
            self._program.append((_CONSTANT, 0, len(self._constants), len(self._pending)))
            self._constants += self._pending
            self._pending = bytearray()


def _integers(values: npt.ArrayLike, name: str, size: int) -> npt.NDArray[np.int64]:
    array = np.asarray(values)
    if array.dtype.kind not in "iub":
        raise EncodeError(f"{name} must be integers, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise EncodeError(f"{name} does not fit an Avro long")
    if array.ndim == 0:
        return np.full(size, array, np.int64)
    if array.shape != (size,):
        raise EncodeError(f"{name} has shape {array.shape}, expected ({size},)")
    return array.astype(np.int64, copy=False)


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
    reasons: Mapping[int, Sequence[Reason]] | EncodedReasons | None = None,
    challenger_version: str | None = None,
    challenger_score: npt.ArrayLike | None = None,
) -> list[bytes]:
    """Framed Decision payloads for a batch, one per row, in order.

    Columns have one value per row; ``decided_at``, ``processing_ms``,
    ``source_partition``, ``source_offset`` and ``challenger_score`` may also be
    one value for the whole batch. ``action`` holds codes 0/1/2 (APPROVE,
    REVIEW, DECLINE); ``features`` is a ``rows x features`` matrix (float32 is
    widened exactly). ``reasons`` maps a row index to its reason codes (rows
    not in it get none), or is the batch's :func:`encode_reasons`. The model, arm and feature-set names are per batch.
    """
    size = _column_size("transaction_id", transaction_id)
    matrix = np.asarray(features)
    if matrix.ndim != 2 or matrix.shape[0] != size:
        raise EncodeError(f"features has shape {matrix.shape}, expected ({size}, n)")
    codes = _enum_codes(action, "action", ACTION_SYMBOLS, size)
    rows = RowPacker(size, frame_header(schema_id))
    _transaction_head(rows, transaction_id, card_id, terminal_id, timestamp, amount, score)
    rows.fixed(codes)
    rows.constant(
        string_bytes(model_name) + string_bytes(model_version) + string_bytes(rollout_arm)
    )
    rows.sparse(_EMPTY_ARRAY, encode_reasons(reasons, size).codes)
    rows.constant(string_bytes(feature_set_version))
    width = matrix.shape[1]
    if width:
        rows.constant(long_bytes(width))
        rows.doubles(matrix)
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


def encode_alerts(
    *,
    transaction_id: npt.ArrayLike,
    card_id: npt.ArrayLike,
    terminal_id: npt.ArrayLike,
    timestamp: npt.ArrayLike,
    amount: npt.ArrayLike,
    score: npt.ArrayLike,
    action: npt.ArrayLike,
    severity: npt.ArrayLike,
    decided_at: npt.ArrayLike,
    source_partition: npt.ArrayLike,
    source_offset: npt.ArrayLike,
    model_name: str,
    model_version: str,
    schema_id: int,
    rollout_arm: str = "champion",
    feature_set_version: str = "",
    reasons: Mapping[int, Sequence[Reason]] | EncodedReasons | None = None,
) -> list[bytes]:
    """Framed Alert payloads, one per row, in order.

    As :func:`encode_decisions`, without the feature vector; ``severity`` holds
    :data:`SEVERITY_SYMBOLS` codes, and each row's reason texts are written
    again as ``reason_texts``.
    """
    size = _column_size("transaction_id", transaction_id)
    actions = _enum_codes(action, "action", ACTION_SYMBOLS, size)
    severities = _enum_codes(severity, "severity", SEVERITY_SYMBOLS, size)
    rows = RowPacker(size, frame_header(schema_id))
    _transaction_head(rows, transaction_id, card_id, terminal_id, timestamp, amount, score)
    rows.fixed(actions)
    rows.fixed(severities)
    rows.constant(
        string_bytes(model_name) + string_bytes(model_version) + string_bytes(rollout_arm)
    )
    encoded = encode_reasons(reasons, size)
    rows.sparse(_EMPTY_ARRAY, encoded.codes)
    rows.sparse(_EMPTY_ARRAY, encoded.texts)
    rows.constant(string_bytes(feature_set_version))
    rows.long(decided_at, "decided_at")
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


def encode_outcomes(
    *,
    transaction_id: npt.ArrayLike,
    card_id: npt.ArrayLike,
    timestamp: npt.ArrayLike,
    score: npt.ArrayLike,
    action: npt.ArrayLike,
    models: Sequence[tuple[str, str]],
    model_index: npt.ArrayLike,
    is_fraud: npt.ArrayLike,
    decided_at: npt.ArrayLike,
    label_timestamp: npt.ArrayLike,
    schema_id: int,
    rollout_arm: str = "champion",
) -> list[bytes]:
    """Framed Outcome payloads (no challenger: ``challenger_*`` are null).

    ``models`` lists the (name, version) pairs of the batch and
    ``model_index`` picks one per row; ``action`` holds :data:`ACTION_SYMBOLS`
    codes.
    """
    size = _column_size("transaction_id", transaction_id)
    codes = _integers(action, "action", size)
    if size and (codes.min() < 0 or codes.max() >= len(ACTION_SYMBOLS)):
        raise EncodeError("action codes must be 0, 1 or 2")
    which = _integers(model_index, "model_index", size)
    if size and (which.min() < 0 or which.max() >= len(models)):
        raise EncodeError(f"model_index must pick one of the {len(models)} models")
    flags = _sized(is_fraud, size, "is_fraud")
    if size and not np.isin(flags, (0, 1)).all():
        raise EncodeError("is_fraud must be 0 or 1")
    rows = RowPacker(size, frame_header(schema_id))
    rows.long(transaction_id, "transaction_id")
    rows.long(card_id, "card_id")
    rows.long(timestamp, "timestamp")
    rows.double(_sized(score, size, "score"))
    rows.long(codes, "action")
    named = [string_bytes(name) + string_bytes(version) for name, version in models]
    if size:
        default = int(np.bincount(which).argmax())
        others = np.flatnonzero(which != default).tolist()
        rows.sparse(named[default], {row: named[int(which[row])] for row in others})
    rows.constant(string_bytes(rollout_arm) + _NULL * 2)  # challenger_version, _score
    rows.fixed(flags.astype(np.uint8).reshape(size, 1))
    rows.long(decided_at, "decided_at")
    rows.long(label_timestamp, "label_timestamp")
    return rows.pack()


def encode_monitor_stats(
    *,
    worker_id: str,
    model_name: str,
    model_version: str,
    window_start: npt.ArrayLike,
    window_end: npt.ArrayLike,
    count: npt.ArrayLike,
    approved: npt.ArrayLike,
    reviewed: npt.ArrayLike,
    declined: npt.ArrayLike,
    alerts: npt.ArrayLike,
    dead_letters: npt.ArrayLike,
    score_histogram: npt.ArrayLike,
    feature_set_version: str,
    feature_names: Sequence[str],
    feature_mean: npt.ArrayLike,
    feature_std: npt.ArrayLike,
    latency_ms_mean: npt.ArrayLike,
    latency_ms_max: npt.ArrayLike,
    schema_id: int,
    rollout_arm: str = "champion",
) -> list[bytes]:
    """Framed MonitorStats payloads, one per window (row), in order.

    ``score_histogram`` is a ``windows x bins`` matrix of counts;
    ``feature_mean`` and ``feature_std`` are ``windows x features`` matrices,
    their columns in ``feature_names`` order. Every window of a call has the
    same worker, model and features.
    """
    size = _column_size("window_start", window_start)
    histogram = np.asarray(score_histogram)
    if histogram.ndim != 2 or histogram.shape[0] != size:
        raise EncodeError(f"score_histogram has shape {histogram.shape}, expected ({size}, bins)")
    means, stds = np.asarray(feature_mean, np.float64), np.asarray(feature_std, np.float64)
    wanted = (size, len(feature_names))
    if means.shape != wanted or stds.shape != wanted:
        raise EncodeError(
            f"feature_mean and feature_std have shapes {means.shape} and {stds.shape}, "
            f"expected {wanted}"
        )
    rows = RowPacker(size, frame_header(schema_id))
    rows.constant(
        string_bytes(worker_id)
        + string_bytes(model_name)
        + string_bytes(model_version)
        + string_bytes(rollout_arm)
    )
    for name, column in (
        ("window_start", window_start),
        ("window_end", window_end),
        ("count", count),
        ("approved", approved),
        ("reviewed", reviewed),
        ("declined", declined),
        ("alerts", alerts),
        ("dead_letters", dead_letters),
    ):
        rows.long(_sized(column, size, name), name)
    # An Avro array: a block of its items (count first), then the empty block.
    bins = histogram.shape[1]
    if bins:
        rows.constant(long_bytes(bins))
        for k in range(bins):
            rows.long(histogram[:, k], "score_histogram")
    rows.constant(_EMPTY_ARRAY + string_bytes(feature_set_version))
    if feature_names:
        rows.constant(long_bytes(len(feature_names)))
        rows.constant(b"".join(string_bytes(name) for name in feature_names))
    rows.constant(_EMPTY_ARRAY)
    for matrix in (means, stds):
        if matrix.shape[1]:
            rows.constant(long_bytes(matrix.shape[1]))
            rows.doubles(matrix)
        rows.constant(_EMPTY_ARRAY)
    rows.double(_sized(latency_ms_mean, size, "latency_ms_mean"))
    rows.double(_sized(latency_ms_max, size, "latency_ms_max"))
    return rows.pack()


def _enum_codes(values: npt.ArrayLike, name: str, symbols: tuple[str, ...], size: int) -> Bytes2D:
    """Enum codes checked against ``symbols``, as one-byte varints (one column)."""
    codes = np.asarray(values)
    if codes.shape != (size,) or codes.dtype.kind not in "iu":
        raise EncodeError(f"{name} must be {size} integer codes, got {codes.dtype} {codes.shape}")
    if size and (int(codes.min()) < 0 or int(codes.max()) >= len(symbols)):
        named = ", ".join(f"{i} ({symbol})" for i, symbol in enumerate(symbols))
        raise EncodeError(f"{name} codes must be one of {named}")
    return (codes.astype(np.uint8) << np.uint8(1)).reshape(size, 1)  # zigzag of a small index


def _transaction_head(
    rows: RowPacker,
    transaction_id: npt.ArrayLike,
    card_id: npt.ArrayLike,
    terminal_id: npt.ArrayLike,
    timestamp: npt.ArrayLike,
    amount: npt.ArrayLike,
    score: npt.ArrayLike,
) -> None:
    """The fields Decision and Alert start with: the transaction's ids, time,
    amount, and its score."""
    for name, column in (
        ("transaction_id", transaction_id),
        ("card_id", card_id),
        ("terminal_id", terminal_id),
        ("timestamp", timestamp),
    ):
        if np.ndim(column) != 1:
            raise EncodeError(f"{name} must have one value per row")
        rows.long(column, name)
    rows.double(_sized(amount, rows.size, "amount"))
    rows.double(_sized(score, rows.size, "score"))


def _sized(values: npt.ArrayLike, size: int, name: str) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.shape != (size,):
        raise EncodeError(f"{name} has shape {array.shape}, expected ({size},)")
    return array


class EncodedReasons:
    """Each row's reason codes, encoded once: as the Avro array of ReasonCode
    records (``codes``) and as the array of their texts (``texts``), keyed by row.

    A flagged row's reasons go into both its Decision and its Alert; encoding
    them once serves both.
    """

    __slots__ = ("codes", "size", "texts")

    def __init__(self, codes: dict[int, bytes], texts: dict[int, bytes], size: int) -> None:
        self.codes = codes
        self.texts = texts
        self.size = size

    def take(self, rows: Sequence[int]) -> EncodedReasons:
        """The reasons of ``rows``, keyed by position in ``rows`` (a batch of alerts)."""
        codes, texts = self.codes, self.texts
        kept = [(k, row) for k, row in enumerate(rows) if row in codes]
        return EncodedReasons(
            {k: codes[row] for k, row in kept}, {k: texts[row] for k, row in kept}, len(rows)
        )


def encode_reasons(
    reasons: Mapping[int, Sequence[Reason]] | EncodedReasons | None, size: int
) -> EncodedReasons:
    """The reason codes of a batch of ``size`` rows, encoded (see :class:`EncodedReasons`).

    ``reasons`` maps a row index to its reasons; rows not in it, or with none,
    get empty arrays.
    """
    if isinstance(reasons, EncodedReasons):
        if reasons.size != size:
            raise EncodeError(f"reasons encoded for {reasons.size} rows, the batch has {size}")
        return reasons
    codes: dict[int, bytes] = {}
    texts: dict[int, bytes] = {}
    strings: dict[str, bytes] = {}
    for row, reasons_of_row in (reasons or {}).items():
        index = int(row)
        if not 0 <= index < size:
            raise EncodeError(f"reasons for row {index}, outside the batch of {size}")
        if not reasons_of_row:
            continue
        try:
            count = long_bytes(len(reasons_of_row))
            parts = [count]
            words = [count]
            for feature, contribution, text in reasons_of_row:
                name = strings.get(feature)
                if name is None:
                    name = strings[feature] = string_bytes(feature)
                said = strings.get(text)
                if said is None:
                    said = strings[text] = string_bytes(text)
                parts += (name, _DOUBLE.pack(contribution), said)
                words.append(said)
        except (TypeError, ValueError, struct.error) as exc:
            raise EncodeError(f"reasons of row {index} do not fit: {exc}") from exc
        parts.append(_EMPTY_ARRAY)
        words.append(_EMPTY_ARRAY)
        codes[index] = b"".join(parts)
        texts[index] = b"".join(words)
    return EncodedReasons(codes, texts, size)


def warm_up() -> None:
    """Compile (or load from numba's cache) the encoding kernels, so no batch pays for it.

    Encodes a tiny batch of each record with the argument types of the hot path.
    """
    one = np.ones(2, np.int64)
    encode_decisions(
        transaction_id=one,
        card_id=one,
        terminal_id=one,
        timestamp=one,
        amount=np.ones(2),
        score=np.ones(2),
        action=np.array([0, 2]),
        features=np.ones((2, 3), np.float32),
        decided_at=1,
        processing_ms=1.0,
        source_partition=one,
        source_offset=one,
        model_name="m",
        model_version="1",
        schema_id=1,
        reasons={1: [("amount", 1.0, "high")]},
    )
    encode_transactions(
        transaction_id=one,
        timestamp=one,
        card_id=one,
        terminal_id=one,
        amount=np.ones(2),
        schema_id=1,
    )
    encode_labels(
        transaction_id=one,
        card_id=one,
        is_fraud=one,
        label_timestamp=one,
        schema_id=1,
        fraud_scenario=np.array([0, 1]),
    )
    encode_outcomes(
        transaction_id=one,
        card_id=one,
        timestamp=one,
        score=np.ones(2),
        action=np.array([0, 2]),
        models=[("m", "1"), ("m", "2")],
        model_index=np.array([0, 1]),
        is_fraud=np.array([False, True]),
        decided_at=one,
        label_timestamp=one,
        schema_id=1,
    )


# --- kernels ------------------------------------------------------------------


@kernel
def _zigzag(value: np.int64) -> np.uint64:  # pragma: no cover - compiled
    """Avro's zigzag mapping of a signed long, as an unsigned 64-bit integer."""
    return np.uint64((value << 1) ^ (value >> 63))


@kernel
def _varint_size(zigzag: np.uint64) -> int:  # pragma: no cover - compiled
    """Bytes of the base-128 varint of ``zigzag``."""
    size = 1
    while zigzag >= np.uint64(0x80):
        zigzag >>= np.uint64(7)
        size += 1
    return size


@kernel
def _put_varint(out: Bytes1D, pos: int, zigzag: np.uint64) -> int:  # pragma: no cover - compiled
    """Write the base-128 varint of ``zigzag`` at ``out[pos]``; the position after it."""
    while zigzag >= np.uint64(0x80):
        out[pos] = np.uint8((zigzag & np.uint64(0x7F)) | np.uint64(0x80))
        zigzag >>= np.uint64(7)
        pos += 1
    out[pos] = np.uint8(zigzag)
    return pos + 1


@kernel
def _put_decimal(out: Bytes1D, pos: int, value: int) -> int:  # pragma: no cover - compiled
    """Write ``value`` (>= 0) in ASCII decimal digits at ``out[pos]``; the position after."""
    digits = 1
    rest = value // 10
    while rest:
        digits += 1
        rest //= 10
    for k in range(digits - 1, -1, -1):
        out[pos + k] = 48 + value % 10
        value //= 10
    return pos + digits


@kernel
def _pack_rows(  # pragma: no cover - compiled
    program: Int64Array,
    constants: Bytes1D,
    fixed: Bytes2D,
    varints: Int64Array,
    masks: npt.NDArray[np.bool_],
    sparse_at: Int64Array,
    sparse_offsets: Int64Array,
    sparse_data: Bytes1D,
) -> tuple[Bytes1D, Bytes1D]:
    """:meth:`RowPacker.pack`: every row written into one buffer; also the buffer's
    ``struct`` format, one ``<length>s`` per row.

    ``program`` has a row (kind, index, start, length) per piece (see
    ``_CONSTANT`` and the other kinds); ``fixed``, ``varints``, ``masks`` and
    ``sparse_at`` have the batch's rows. Sparse bytes number ``k`` are
    ``sparse_data[sparse_offsets[k]:sparse_offsets[k + 1]]``; ``sparse_at``
    holds -1 where a row takes the piece's default.
    """
    size = len(fixed)
    widest = 0  # a row's longest possible length, sparse bytes aside
    for p in range(len(program)):
        widest += 10 if program[p, 0] == _VARINT else program[p, 3]
    out = np.empty(size * widest + len(sparse_data), np.uint8)
    layout = np.empty(1 + size * 21, np.uint8)
    layout[0] = ord("<")  # standard sizes, no alignment
    written = 1
    pos = 0
    for row in range(size):
        first = pos
        for p in range(len(program)):
            kind, index, start, length = program[p, 0], program[p, 1], program[p, 2], program[p, 3]
            if kind == _VARINT:
                if start < 0 or masks[start, row]:
                    pos = _put_varint(out, pos, _zigzag(varints[index, row]))
                continue
            if kind == _FIXED:
                source = fixed[row, start : start + length]
            elif kind == _SPARSE and sparse_at[index, row] >= 0:
                at = sparse_at[index, row]
                source = sparse_data[sparse_offsets[at] : sparse_offsets[at + 1]]
            else:  # a constant, or a sparse piece's default (also among the constants)
                source = constants[start : start + length]
            target = out[pos : pos + len(source)]
            for k in range(len(source)):  # indices from 0: the loop compiles to a block copy
                target[k] = source[k]
            pos += len(source)
        written = _put_decimal(layout, written, pos - first)
        layout[written] = ord("s")
        written += 1
    return out[:pos], layout[:written]
