"""Property tests of the serde: round trips of every schema, evolution, columns, garbage.

Strategies are derived from the parsed schemas, so a new field is covered as
soon as it is added.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.serde import (
    DecodeError,
    Limits,
    LocalSchemaIds,
    RecordCodec,
    RecordName,
    SchemaVersion,
    Serde,
    read_schema_id,
)

LIMITS = Limits()
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
LONG = st.integers(-(2**63), 2**63 - 1)

# Fields the constraints check: keep generated values inside the limits.
VALID_OVERRIDES: dict[str, st.SearchStrategy[Any]] = {
    "transaction_id": st.integers(0, 2**63 - 1),
    "card_id": st.integers(0, 2**63 - 1),
    "terminal_id": st.integers(0, 2**63 - 1),
    "amount": st.floats(0.0, LIMITS.max_amount),
    "timestamp": st.integers(LIMITS.min_timestamp_ms, LIMITS.max_timestamp_ms - 1),
    "label_timestamp": st.integers(LIMITS.min_timestamp_ms, LIMITS.max_timestamp_ms - 1),
}


def from_avro(schema: Any) -> st.SearchStrategy[Any]:
    """Values of a parsed Avro type (NaN excluded so records compare equal)."""
    if isinstance(schema, list):
        return st.one_of([from_avro(branch) for branch in schema])
    if isinstance(schema, str):
        return _PRIMITIVES[schema]
    kind = schema["type"]
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: from_avro(f["type"]) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(from_avro(schema["items"]), max_size=4)
    if kind == "map":
        return st.dictionaries(TEXT, from_avro(schema["values"]), max_size=3)
    return from_avro(kind)


def valid_records(version: SchemaVersion) -> st.SearchStrategy[dict[str, Any]]:
    """Records of ``version`` that also pass the value constraints."""
    fields = {
        f["name"]: VALID_OVERRIDES.get(f["name"], from_avro(f["type"]))
        for f in version.parsed["fields"]
    }
    return st.fixed_dictionaries(fields)


_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": LONG,
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "string": TEXT,
    "bytes": st.binary(max_size=12),
}


SERDE = Serde.local()
CATALOG = SERDE.catalog
REASONS = {
    "bad_magic",
    "unknown_schema_id",
    "wrong_schema",
    "truncated",
    "avro_decode",
    "json_invalid",
    "missing_field",
    "wrong_type",
    "invalid_value",
}
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", list(RecordName))
def test_every_schema_round_trips(name: str) -> None:
    codec = SERDE.codec(name)

    @FAST
    @given(st.lists(valid_records(codec.reader), min_size=1, max_size=5))
    def check(records: list[dict[str, Any]]) -> None:
        payloads = codec.encode_batch(records)
        assert all(read_schema_id(p) == codec.reader.schema_id for p in payloads)
        assert [codec.decode(p) for p in payloads] == records
        batch = codec.decode_batch(payloads)
        assert batch.records == records
        assert batch.indices == list(range(len(records)))
        assert batch.errors == []

    check()


def _v1_codecs() -> tuple[RecordCodec, RecordCodec]:
    v1, v2 = CATALOG.versions(RecordName.TRANSACTION)
    ids = LocalSchemaIds(CATALOG)
    old_writer = RecordCodec(v2, ids, writer=v1)  # writes v1, reads as v2
    old_reader = RecordCodec(v1, ids)  # reads anything as v1
    return old_writer, old_reader


@FAST
@given(valid_records(CATALOG.versions(RecordName.TRANSACTION)[0]))
def test_old_writer_new_reader_fills_defaults(record: dict[str, Any]) -> None:
    old_writer, _ = _v1_codecs()
    payload = old_writer.encode(record)
    assert read_schema_id(payload) == 1
    decoded = SERDE.transactions().decode(payload)
    assert decoded == {
        **record,
        "currency": "EUR",
        "channel": None,
        "merchant_id": None,
        "merchant_category": None,
    }


@FAST
@given(valid_records(CATALOG.current(RecordName.TRANSACTION)))
def test_new_writer_old_reader_drops_new_fields(record: dict[str, Any]) -> None:
    _, old_reader = _v1_codecs()
    payload = SERDE.transactions().encode(record)
    assert read_schema_id(payload) == 2
    core = ("transaction_id", "timestamp", "card_id", "terminal_id", "amount")
    assert old_reader.decode(payload) == {key: record[key] for key in core}


@FAST
@given(st.binary(max_size=40))
def test_random_bytes_never_escape_as_other_errors(payload: bytes) -> None:
    codec = SERDE.transactions()
    try:
        record = codec.decode(payload)
    except DecodeError as exc:
        assert exc.payload is payload
        assert exc.reason in REASONS
    else:
        assert set(record) >= {"transaction_id", "amount"}


@FAST
@given(st.lists(st.binary(max_size=30).map(lambda b: b"\x00\x00\x00\x00\x02" + b), max_size=8))
def test_random_bodies_with_valid_header(payloads: list[bytes]) -> None:
    codec = SERDE.transactions()
    batch = codec.decode_batch(payloads)
    assert sorted(batch.indices + [e.index for e in batch.errors]) == list(range(len(payloads)))
    for error in batch.errors:
        assert error.payload is payloads[error.index]
        assert error.reason in REASONS


def _transaction_payloads() -> st.SearchStrategy[bytes]:
    codec = SERDE.transactions()
    v2 = CATALOG.current(RecordName.TRANSACTION)
    valid = valid_records(v2).map(codec.encode)
    any_values = from_avro(v2.parsed).map(codec.encode)  # often out of limits
    as_json = valid_records(v2).map(_to_json)
    header = st.sampled_from([1, 2, 3, 99]).map(lambda i: struct.pack(">bI", 0, i))
    garbage = st.tuples(header, st.binary(max_size=40)).map(lambda t: t[0] + t[1])
    truncated = st.tuples(valid, st.integers(0, 30)).map(lambda t: t[0][: t[1]])
    return st.one_of(valid, any_values, as_json, garbage, truncated, st.binary(max_size=20))


def _to_json(record: dict[str, Any]) -> bytes:
    import json

    return json.dumps(record).encode()


@pytest.mark.parametrize("fast_min_rows", [0, 128])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=st.lists(_transaction_payloads(), max_size=12))
def test_columns_equal_record_by_record(payloads: list[bytes], fast_min_rows: int) -> None:
    codec = Serde.local().transactions()  # its own codec: the knob below is per codec
    codec.fast_min_rows = fast_min_rows  # 0: the columnar reader for any batch
    batch = codec.decode_batch(payloads)
    columns = codec.decode_columns(payloads)
    assert columns.indices.tolist() == batch.indices
    assert [(e.index, e.reason, e.message) for e in columns.errors] == [
        (e.index, e.reason, e.message) for e in batch.errors
    ]
    assert all(e.payload is payloads[e.index] for e in columns.errors)
    for name, dtype in (
        ("transaction_id", np.int64),
        ("timestamp", np.int64),
        ("card_id", np.int64),
        ("terminal_id", np.int64),
        ("amount", np.float64),
    ):
        column = getattr(columns, name)
        assert column.dtype == dtype
        assert column.tolist() == [r[name] for r in batch.records]
    assert all(math.isfinite(a) for a in columns.amount.tolist())
