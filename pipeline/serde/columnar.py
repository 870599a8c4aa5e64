"""Transactions and labels as columns: the scorer's hot path.

``decode_columns`` turns a batch of payloads into numpy arrays of the core
fields (five for a transaction, four for a label), plus the input positions of
the good rows and the failures. It gives exactly what record-by-record
decoding gives, without a dict per row where it can avoid one.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from fastavro import schemaless_writer

from pipeline.serde.codec import RecordCodec
from pipeline.serde.constraints import (
    check_label_columns,
    check_transaction_columns,
    explain_label_row,
    explain_transaction_row,
)
from pipeline.serde.errors import INVALID_VALUE, DecodeError, EncodeError, RecordError
from pipeline.serde.vectorized import FlatBatch, Layout, flat_layout

COLUMNS = ("transaction_id", "timestamp", "card_id", "terminal_id", "amount")
_KIND = dict.fromkeys(COLUMNS[:4], "long") | {"amount": "double"}
LABEL_COLUMNS = ("transaction_id", "card_id", "is_fraud", "label_timestamp")
_LABEL_KIND = {
    "transaction_id": "long",
    "card_id": "long",
    "is_fraud": "boolean",
    "label_timestamp": "long",
}

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class TransactionColumns:
    """Good rows of a batch as columns; ``indices[i]`` is row i's position in the input."""

    transaction_id: Int64Array
    timestamp: Int64Array
    card_id: Int64Array
    terminal_id: Int64Array
    amount: Float64Array
    indices: Int64Array
    errors: list[RecordError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class LabelColumns:
    """Good labels of a batch as columns; ``indices[i]`` is row i's position in the input."""

    transaction_id: Int64Array
    card_id: Int64Array
    is_fraud: BoolArray
    label_timestamp: Int64Array
    indices: Int64Array
    errors: list[RecordError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)


class _FlatColumnsCodec(RecordCodec):
    """A record codec whose fixed fields the compiled reader can take from a batch."""

    fast_min_rows = 1
    """Batches smaller than this are decoded record by record. A columnar decode
    has a fixed cost of some tens of microseconds (array set-up, vectorised
    checks), about what the record decoder takes for five to ten rows, and then
    costs some 0.1 us a row against some 5 us; every batch takes the compiled
    reader, so one path serves all sizes."""

    column_kinds: ClassVar[Mapping[str, str]] = {}
    """Kind of each column read by the compiled reader, in column order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._layouts: dict[int, Layout | None] = {}

    def _columns(
        self, payloads: Sequence[bytes]
    ) -> tuple[Int64Array, Int64Array, list[RecordError]]:
        """The columns of the decodable rows (one row per column, doubles as their
        float64 bits, booleans as 0/1), their input positions, and the failures.

        The compiled reader takes what it can read with certainty; the record
        decoder takes the rest, so the rows are exactly :meth:`decode_batch`'s.
        """
        size = len(payloads)
        values = np.zeros((len(self.column_kinds), size), np.int64)
        good = np.zeros(size, np.bool_)
        if size and size >= self.fast_min_rows:
            self._decode_fast(payloads, values, good)
        errors: list[RecordError] = []
        columns = [
            values[k].view(np.float64) if kind == "double" else values[k]
            for k, kind in enumerate(self.column_kinds.values())
        ]
        names = list(self.column_kinds)
        decode = self._decode_unchecked
        for index in np.flatnonzero(~good).tolist():
            payload = payloads[index]
            try:
                record = decode(payload)
            except DecodeError as exc:
                errors.append(RecordError(index, payload, exc.reason, exc.message))
                continue
            for name, column in zip(names, columns, strict=True):
                column[index] = record[name]
            good[index] = True
        if errors:
            indices = np.flatnonzero(good).astype(np.int64)
            values = values[:, indices]
        else:
            indices = np.arange(size, dtype=np.int64)
        return values, indices, errors

    def _decode_fast(self, payloads: Sequence[bytes], values: Int64Array, good: BoolArray) -> None:
        """Read every frame of the reader's schema: ``values`` as in ``FlatBatch.read_into``."""
        batch = FlatBatch(payloads)
        ids = batch.schema_ids()
        wanted = tuple(self.column_kinds)
        for schema_id in batch.distinct_ids():
            layout = self._fast_layout(schema_id)
            if layout is not None:
                batch.read_into(layout, ids == schema_id, wanted, values, good)

    def _fast_layout(self, schema_id: int) -> Layout | None:
        """The flat layout of a writer schema identical to the reader's, else ``None``."""
        if schema_id in self._layouts:
            return self._layouts[schema_id]
        writer = self._ids.writer_schema(schema_id)
        layout = None
        if writer is not None and writer.canonical == self.reader.canonical:
            layout = flat_layout(writer.parsed)
            kinds = {name: (kind, nullable) for name, kind, nullable in layout or ()}
            if any(kinds.get(name) != (kind, False) for name, kind in self.column_kinds.items()):
                layout = None
        self._layouts[schema_id] = layout
        return layout


class TransactionCodec(_FlatColumnsCodec):
    """Record codec for ``Transaction`` with columnar decode and encode."""

    column_kinds: ClassVar[Mapping[str, str]] = _KIND

    def decode_columns(self, payloads: Sequence[bytes]) -> TransactionColumns:
        """Decode a batch into columns; bad payloads become errors, never exceptions.

        Frames of the current schema are read for the whole batch at once by a
        compiled kernel (batches of ``fast_min_rows`` or more); JSON, older
        schema versions, small batches and anything doubtful go through the
        record decoder. The result is the same as :meth:`decode_batch`'s.
        """
        values, indices, errors = self._columns(payloads)
        return self._validated(
            list(values[:4]), values[4].view(np.float64), indices, errors, payloads
        )

    def encode_columns(
        self,
        transaction_id: npt.ArrayLike,
        timestamp: npt.ArrayLike,
        card_id: npt.ArrayLike,
        terminal_id: npt.ArrayLike,
        amount: npt.ArrayLike,
    ) -> list[bytes]:
        """Framed payloads from equal-length columns (other fields take their defaults)."""
        header = self._frame_header()
        schema = self.writer.parsed
        lists = [
            np.asarray(transaction_id, np.int64).tolist(),
            np.asarray(timestamp, np.int64).tolist(),
            np.asarray(card_id, np.int64).tolist(),
            np.asarray(terminal_id, np.int64).tolist(),
            np.asarray(amount, np.float64).tolist(),
        ]
        if len({len(column) for column in lists}) > 1:
            raise EncodeError("columns differ in length")
        out: list[bytes] = []
        buffer = io.BytesIO()
        record: dict[str, object] = {}
        for values in zip(*lists, strict=True):
            record.update(zip(COLUMNS, values, strict=True))
            buffer.seek(0)
            buffer.truncate()
            buffer.write(header)
            try:
                schemaless_writer(buffer, schema, record)
            except Exception as exc:  # fastavro raises several unrelated types
                raise EncodeError(f"transaction row {len(out)} does not fit: {exc}") from exc
            out.append(buffer.getvalue())
        return out

    def _validated(
        self,
        ints: list[Int64Array],
        amount: Float64Array,
        indices: Int64Array,
        errors: list[RecordError],
        payloads: Sequence[bytes],
    ) -> TransactionColumns:
        transaction_id, timestamp, card_id, terminal_id = ints
        bad = check_transaction_columns(
            transaction_id, timestamp, card_id, terminal_id, amount, self.limits
        )
        if bad.any():
            for row in np.flatnonzero(bad).tolist():
                index = int(indices[row])
                message = explain_transaction_row(
                    int(transaction_id[row]),
                    int(card_id[row]),
                    int(terminal_id[row]),
                    int(timestamp[row]),
                    float(amount[row]),
                    self.limits,
                )
                errors.append(RecordError(index, payloads[index], INVALID_VALUE, message))
            errors.sort(key=lambda error: error.index)
            keep = ~bad
            transaction_id, timestamp, card_id, terminal_id = (
                column[keep] for column in (transaction_id, timestamp, card_id, terminal_id)
            )
            amount, indices = amount[keep], indices[keep]
        return TransactionColumns(
            transaction_id, timestamp, card_id, terminal_id, amount, indices, errors
        )


class LabelCodec(_FlatColumnsCodec):
    """Record codec for ``Label`` with columnar decode."""

    column_kinds: ClassVar[Mapping[str, str]] = _LABEL_KIND

    def decode_columns(self, payloads: Sequence[bytes]) -> LabelColumns:
        """Decode a batch of labels into columns; bad payloads become errors, never exceptions.

        Frames of the current schema are read for the whole batch at once by a
        compiled kernel (batches of ``fast_min_rows`` or more); JSON, other
        schema versions, small batches and anything doubtful (a boolean byte
        other than 0 or 1, an int beyond 32 bits, non-ASCII text...) go through
        the record decoder. ``source`` and ``fraud_scenario`` are checked but
        not returned. The result is the same as :meth:`decode_batch`'s.
        """
        values, indices, errors = self._columns(payloads)
        return self._validated(values, indices, errors, payloads)

    def _validated(
        self,
        values: Int64Array,
        indices: Int64Array,
        errors: list[RecordError],
        payloads: Sequence[bytes],
    ) -> LabelColumns:
        transaction_id, card_id, is_fraud, label_timestamp = values
        bad = check_label_columns(transaction_id, card_id, label_timestamp, self.limits)
        if bad.any():
            for row in np.flatnonzero(bad).tolist():
                index = int(indices[row])
                message = explain_label_row(
                    int(transaction_id[row]),
                    int(card_id[row]),
                    int(label_timestamp[row]),
                    self.limits,
                )
                errors.append(RecordError(index, payloads[index], INVALID_VALUE, message))
            errors.sort(key=lambda error: error.index)
            keep = ~bad
            transaction_id, card_id, is_fraud, label_timestamp = (
                column[keep] for column in (transaction_id, card_id, is_fraud, label_timestamp)
            )
            indices = indices[keep]
        return LabelColumns(
            transaction_id, card_id, is_fraud != 0, label_timestamp, indices, errors
        )
