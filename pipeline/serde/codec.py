"""Encode and decode one record type in Confluent framing, one by one or in batches.

Decoding finds the writer schema by the frame's id and resolves it to the
reader schema (the record's current version), so data written by older or
newer compatible versions stays readable. Batch decoding never raises for a bad
record: it reports it and carries on.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from pipeline.serde.catalog import RecordName, SchemaVersion
from pipeline.serde.constraints import Limits, check_label, check_transaction
from pipeline.serde.errors import (
    AVRO_DECODE,
    BAD_MAGIC,
    INVALID_VALUE,
    TRUNCATED,
    UNKNOWN_SCHEMA_ID,
    WRONG_SCHEMA,
    DecodeError,
    EncodeError,
    RecordError,
)
from pipeline.serde.framing import HEADER_SIZE, MAGIC_BYTE, frame_header, read_schema_id
from pipeline.serde.ids import SchemaIds
from pipeline.serde.json_input import looks_like_json, record_from_json

Record = dict[str, Any]
Checker = Callable[[Mapping[str, Any], Limits], "str | None"]

_CHECKS: dict[str, Checker] = {
    RecordName.TRANSACTION: check_transaction,
    RecordName.LABEL: check_label,
}


@dataclass(frozen=True)
class DecodedBatch:
    """Result of a batch decode: good records with their input positions, and the failures."""

    records: list[Record] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)


class RecordCodec:
    """Serde of one record type; build it through :class:`pipeline.serde.Serde`."""

    def __init__(
        self,
        reader: SchemaVersion,
        ids: SchemaIds,
        limits: Limits | None = None,
        *,
        writer: SchemaVersion | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer or reader
        self.limits = limits or Limits()
        self._ids = ids
        self._header: bytes | None = None
        # schema id -> (writer parsed schema, reader parsed schema or None when identical)
        self._plans: dict[int, tuple[Any, Any]] = {}
        self._check = _CHECKS.get(reader.name)

    @property
    def name(self) -> str:
        return self.reader.name

    @property
    def schema_id(self) -> int:
        """The id this codec frames its records with (registered on first use)."""
        return read_schema_id(self._frame_header())

    # --- encode -------------------------------------------------------------

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """One framed payload; :class:`EncodeError` if the record does not fit."""
        return self.encode_batch((record,))[0]

    def encode_batch(self, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """Framed payloads, in order. Fields missing from a record take their defaults."""
        header = self._frame_header()
        schema = self.writer.parsed
        out: list[bytes] = []
        buffer = io.BytesIO()
        for index, record in enumerate(records):
            buffer.seek(0)
            buffer.truncate()
            buffer.write(header)
            try:
                schemaless_writer(buffer, schema, record)
            except Exception as exc:  # fastavro raises ValueError, TypeError, OverflowError...
                raise EncodeError(f"{self.name} record {index} does not fit: {exc}") from exc
            out.append(buffer.getvalue())
        return out

    # --- decode -------------------------------------------------------------

    def decode(self, payload: bytes) -> Record:
        """One record; :class:`DecodeError` (original bytes kept) if it is bad."""
        record = self._decode_unchecked(payload)
        if self._check is not None:
            problem = self._check(record, self.limits)
            if problem is not None:
                raise DecodeError(INVALID_VALUE, problem, payload)
        return record

    def decode_batch(self, payloads: Sequence[bytes]) -> DecodedBatch:
        """Decode every payload; bad ones become :class:`RecordError`s, never exceptions."""
        batch = DecodedBatch()
        decode = self.decode
        for index, payload in enumerate(payloads):
            try:
                record = decode(payload)
            except DecodeError as exc:
                batch.errors.append(RecordError(index, payload, exc.reason, exc.message))
            else:
                batch.records.append(record)
                batch.indices.append(index)
        return batch

    def _decode_unchecked(self, payload: bytes) -> Record:
        if payload[:1] != b"\x00":
            if looks_like_json(payload):
                return record_from_json(payload, self.reader)
            if not payload:
                raise DecodeError(TRUNCATED, "empty payload", payload)
            raise DecodeError(
                BAD_MAGIC, f"first byte is {payload[0]}, expected {MAGIC_BYTE}", payload
            )
        schema_id = read_schema_id(payload)
        plan = self._plans.get(schema_id)
        if plan is None:
            plan = self._plan(schema_id, payload)
        buffer = io.BytesIO(payload)
        buffer.seek(HEADER_SIZE)
        try:
            record = cast(Record, schemaless_reader(buffer, plan[0], plan[1]))
        except (EOFError, IndexError):  # fastavro's C reader ran out of bytes
            raise DecodeError(TRUNCATED, "body ends before the record does", payload) from None
        except SchemaResolutionError as exc:
            raise DecodeError(WRONG_SCHEMA, str(exc), payload) from None
        except Exception as exc:  # corrupt bytes surface as many exception types
            raise DecodeError(AVRO_DECODE, f"{type(exc).__name__}: {exc}", payload) from None
        if buffer.tell() != len(payload):
            extra = len(payload) - buffer.tell()
            raise DecodeError(AVRO_DECODE, f"{extra} bytes after the record", payload)
        return record

    def _plan(self, schema_id: int, payload: bytes) -> tuple[Any, Any]:
        writer = self._ids.writer_schema(schema_id)
        if writer is None:
            raise DecodeError(UNKNOWN_SCHEMA_ID, f"schema id {schema_id} is unknown", payload)
        if writer.full_name != self.reader.full_name:
            raise DecodeError(
                WRONG_SCHEMA,
                f"schema id {schema_id} is {writer.full_name}, expected {self.reader.full_name}",
                payload,
            )
        same = writer.canonical == self.reader.canonical
        plan = (writer.parsed, None if same else self.reader.parsed)
        self._plans[schema_id] = plan
        return plan

    def _frame_header(self) -> bytes:
        if self._header is None:
            self._header = frame_header(self._ids.id_for(self.writer))
        return self._header
