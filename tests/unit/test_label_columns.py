"""Labels as columns: ``LabelCodec.decode_columns`` against record-by-record decoding.

The compiled reader may take a label only when it is certain of it; every
other payload goes to the record decoder, so the columns, the good rows and the
errors (index, reason, message) are always those of :meth:`decode_batch`.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import damaged

from pipeline.serde import (
    LabelCodec,
    LabelColumns,
    Limits,
    RecordName,
    Serde,
    encode_labels,
    frame_header,
    schema_id_for,
    vectorized,
)
from pipeline.serde.columnar import LABEL_COLUMNS
from pipeline.serde.fast_encode import long_bytes, string_bytes
from pipeline.serde.vectorized import FlatBatch, Layout, flat_layout

SERDE = Serde.local()
LABELS = SERDE.labels()
HEADER = frame_header(LABELS.schema_id)
LIMITS = Limits()
TIMESTAMP = 1_522_540_800_123
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _body(
    transaction_id: int | bytes = 7,
    card_id: int | bytes = 42,
    is_fraud: bytes = b"\x01",
    label_timestamp: int | bytes = TIMESTAMP,
    source: bytes = string_bytes("chargeback"),
    fraud_scenario: bytes = b"\x00",
) -> bytes:
    """A Label body written by hand, field by field (bytes are written as they are)."""

    def long(value: int | bytes) -> bytes:
        return value if isinstance(value, bytes) else long_bytes(value)

    return (
        long(transaction_id)
        + long(card_id)
        + is_fraud
        + long(label_timestamp)
        + source
        + fraud_scenario
    )


def _fresh_codec() -> LabelCodec:
    return Serde.local().labels()


def _same_as_record_by_record(payloads: list[bytes], codec: LabelCodec | None = None) -> None:
    codec = codec or _fresh_codec()
    columns = codec.decode_columns(payloads)
    batch = codec.decode_batch(payloads)
    assert isinstance(columns, LabelColumns)
    assert len(columns) == len(batch.records)
    assert columns.indices.tolist() == batch.indices
    assert [(e.index, e.reason, e.message) for e in columns.errors] == [
        (e.index, e.reason, e.message) for e in batch.errors
    ]
    assert all(e.payload is payloads[e.index] for e in columns.errors)
    for name in LABEL_COLUMNS:
        assert getattr(columns, name).tolist() == [record[name] for record in batch.records]
    assert columns.is_fraud.dtype == np.bool_
    for name in ("transaction_id", "card_id", "label_timestamp", "indices"):
        assert getattr(columns, name).dtype == np.int64


def _counting(codec: LabelCodec, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Make the record decoder of ``codec`` keep each payload it is given."""
    calls: list[bytes] = []
    decode: Callable[[bytes], dict[str, Any]] = codec._decode_unchecked

    def counting(payload: bytes) -> dict[str, Any]:
        calls.append(payload)
        return decode(payload)

    monkeypatch.setattr(codec, "_decode_unchecked", counting)
    return calls


def _fallbacks(payloads: list[bytes], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Indices of the payloads that ``decode_columns`` gives to the record decoder."""
    codec = _fresh_codec()
    calls = _counting(codec, monkeypatch)
    codec.decode_columns(payloads)
    return [next(i for i, p in enumerate(payloads) if p is call) for call in calls]


def _record(**change: Any) -> dict[str, Any]:
    return {
        "transaction_id": 7,
        "card_id": 42,
        "is_fraud": True,
        "label_timestamp": TIMESTAMP,
        "source": "chargeback",
        "fraud_scenario": None,
    } | change


# --- the fast path ---------------------------------------------------------------


def test_factory_hands_out_a_label_codec() -> None:
    serde = Serde.local()
    assert isinstance(serde.codec(RecordName.LABEL), LabelCodec)
    assert serde.labels() is serde.codec("Label") is serde.codec("fraud.pipeline.Label")
    assert not isinstance(serde.codec("Decision"), LabelCodec)


def test_encoded_labels_are_read_by_the_kernel_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    size = 300
    payloads = encode_labels(
        transaction_id=np.arange(size) * 1_000_003,
        card_id=np.arange(size)[::-1],
        is_fraud=np.arange(size) % 3 == 0,
        label_timestamp=TIMESTAMP + np.arange(size),
        fraud_scenario=np.arange(size) % 4,
        source="simulator",
        schema_id=schema_id_for(LABELS),
    )
    assert _fallbacks(payloads, monkeypatch) == []
    columns = _fresh_codec().decode_columns(payloads)
    assert columns.indices.tolist() == list(range(size))
    assert columns.transaction_id.tolist() == (np.arange(size) * 1_000_003).tolist()
    assert columns.is_fraud.tolist() == (np.arange(size) % 3 == 0).tolist()
    assert columns.label_timestamp[-1] == TIMESTAMP + size - 1
    _same_as_record_by_record(payloads)


def test_a_single_label_and_an_empty_batch() -> None:
    columns = _fresh_codec().decode_columns([LABELS.encode(_record())])
    assert columns.card_id.tolist() == [42] and columns.is_fraud.tolist() == [True]
    empty = _fresh_codec().decode_columns([])
    assert len(empty) == 0 and empty.errors == []
    assert empty.is_fraud.dtype == np.bool_ and empty.transaction_id.dtype == np.int64
    _same_as_record_by_record([])


# --- rows the kernel must leave to the record decoder -------------------------------


DOUBTFUL = {
    "plain": (_body(), False),
    "not fraud": (_body(is_fraud=b"\x00"), False),
    "int32 max": (_body(fraud_scenario=b"\x02" + long_bytes(INT32_MAX)), False),
    "int32 min": (_body(fraud_scenario=b"\x02" + long_bytes(INT32_MIN)), False),
    "overlong null branch": (_body(fraud_scenario=b"\x80\x00"), False),  # read so by fastavro
    "overlong long": (_body(transaction_id=b"\x8e\x00"), False),  # 7 on two bytes
    "boolean byte 2": (_body(is_fraud=b"\x02"), True),  # fastavro reads it as true
    "boolean byte 255": (_body(is_fraud=b"\xff"), True),
    "boolean byte 128": (_body(is_fraud=b"\x80"), True),
    "int32 max + 1": (_body(fraud_scenario=b"\x02" + long_bytes(INT32_MAX + 1)), True),
    "int32 min - 1": (_body(fraud_scenario=b"\x02" + long_bytes(INT32_MIN - 1)), True),
    "int64 max as int": (_body(fraud_scenario=b"\x02" + long_bytes(INT64_MAX)), True),
    "union branch 2": (_body(fraud_scenario=b"\x04\x02"), True),
    "union branch -1": (_body(fraud_scenario=b"\x01\x02"), True),
    "non-ASCII source": (_body(source=string_bytes("café")), True),
    "source not UTF-8": (_body(source=b"\x04\xff\xfe"), True),
    "negative string length": (_body(source=b"\x01ab"), True),
    "string past the end": (_body(source=b"\x7eab"), True),
    "trailing byte": (_body(fraud_scenario=b"\x00\x00"), True),
    "field missing": (_body(fraud_scenario=b""), True),
}


@pytest.mark.parametrize(("body", "fallback"), DOUBTFUL.values(), ids=DOUBTFUL.keys())
def test_doubtful_rows_go_to_the_record_decoder(
    body: bytes, fallback: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = [HEADER + _body(), HEADER + body, HEADER + _body(transaction_id=9)]
    assert _fallbacks(payloads, monkeypatch) == ([1] if fallback else [])
    _same_as_record_by_record(payloads)


def test_odd_but_valid_rows_still_decode() -> None:
    payloads = [
        HEADER + _body(is_fraud=b"\x02"),
        HEADER + _body(fraud_scenario=b"\x02" + long_bytes(INT32_MAX + 1)),
        HEADER + _body(source=string_bytes("café")),
    ]
    columns = _fresh_codec().decode_columns(payloads)
    assert columns.errors == []
    assert columns.indices.tolist() == [0, 1, 2]
    assert columns.is_fraud.tolist() == [True, True, True]
    _same_as_record_by_record(payloads)


def test_every_truncation_is_refused() -> None:
    payload = HEADER + _body(
        transaction_id=INT64_MAX, fraud_scenario=b"\x02" + long_bytes(INT32_MIN)
    )
    prefixes = [payload[:cut] for cut in range(len(payload))]
    columns = _fresh_codec().decode_columns(prefixes)
    assert len(columns) == 0 and len(columns.errors) == len(prefixes)
    _same_as_record_by_record([*prefixes, payload])


def test_frames_of_other_schemas_ids_and_formats() -> None:
    transaction = SERDE.transactions().encode(
        {"transaction_id": 1, "timestamp": TIMESTAMP, "card_id": 2, "terminal_id": 3, "amount": 1.0}
    )
    payloads = [
        b"",
        b"\x00\x00",
        b"\x01" + HEADER[1:] + _body(),  # wrong magic byte
        b"garbage",
        frame_header(999) + _body(),  # unknown schema id
        transaction,  # a Transaction id: wrong schema
        HEADER + _body(),
        HEADER,
    ]
    columns = _fresh_codec().decode_columns(payloads)
    assert columns.indices.tolist() == [6]
    assert [e.reason for e in columns.errors] == [
        "truncated",
        "truncated",
        "bad_magic",
        "bad_magic",
        "unknown_schema_id",
        "wrong_schema",
        "truncated",
    ]
    _same_as_record_by_record(payloads)


def test_json_labels_take_the_record_decoder() -> None:
    def text(**change: Any) -> bytes:
        record = {k: v for k, v in _record(**change).items() if v is not ...}
        return json.dumps(record).encode()

    payloads = [
        text(),
        text(fraud_scenario=2, source=...),  # source takes its default
        text(label_timestamp="2018-04-01T00:00:00.123"),
        text(is_fraud=1),  # booleans are never numbers
        text(card_id=...),
        text(transaction_id=-1),
        text(transaction_id=2**63),
        b"{not json",
        b'  {"transaction_id": 1}',
        HEADER + _body(),
    ]
    columns = _fresh_codec().decode_columns(payloads)
    assert columns.indices.tolist() == [0, 1, 2, 9]
    assert columns.label_timestamp.tolist() == [TIMESTAMP] * 4
    _same_as_record_by_record(payloads)


def test_an_older_writer_schema_is_resolved_by_the_record_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient.new_client({"url": "mock://label-columns-evolution"})
    older = json.loads(LABELS.reader.schema_str)
    older["fields"] = [f for f in older["fields"] if f["name"] != "fraud_scenario"]
    older_id = client.register_schema("fraud.pipeline.Label", Schema(json.dumps(older), "AVRO"))
    codec = Serde.with_registry(client).labels()
    old_payload = struct.pack(">bI", 0, older_id) + _body(fraud_scenario=b"")
    payloads = [old_payload, codec.encode(_record()), old_payload + b"\x00"]
    calls = _counting(codec, monkeypatch)
    columns = codec.decode_columns(payloads)
    assert len(calls) == 2  # the older frames only
    assert columns.indices.tolist() == [0, 1]
    assert [e.index for e in columns.errors] == [2]
    _same_as_record_by_record(payloads, Serde.with_registry(client).labels())


# --- validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"transaction_id": -1},
        {"card_id": INT64_MIN},
        {"transaction_id": -5, "card_id": -6},
        {"label_timestamp": LIMITS.min_timestamp_ms - 1},
        {"label_timestamp": LIMITS.max_timestamp_ms},
        {"label_timestamp": INT64_MAX},
        {"card_id": -1, "label_timestamp": 0},
    ],
)
def test_invalid_values_are_errors_with_check_label_messages(change: dict[str, Any]) -> None:
    bad = LABELS.encode(_record(**change))
    payloads = [LABELS.encode(_record()), bad, b"junk", bad, LABELS.encode(_record())]
    columns = _fresh_codec().decode_columns(payloads)
    assert columns.indices.tolist() == [0, 4]
    assert [(e.index, e.reason) for e in columns.errors] == [
        (1, "invalid_value"),
        (2, "bad_magic"),
        (3, "invalid_value"),
    ]
    _same_as_record_by_record(payloads)


def test_timestamps_at_the_limits() -> None:
    stamps = [
        LIMITS.min_timestamp_ms - 1,
        LIMITS.min_timestamp_ms,
        LIMITS.max_timestamp_ms - 1,
        LIMITS.max_timestamp_ms,
    ]
    payloads = [LABELS.encode(_record(label_timestamp=stamp)) for stamp in stamps]
    columns = _fresh_codec().decode_columns(payloads)
    assert columns.label_timestamp.tolist() == stamps[1:3]
    assert [e.index for e in columns.errors] == [0, 3]
    _same_as_record_by_record(payloads)


# --- properties ------------------------------------------------------------------

IDS = st.integers(-3, 2**40) | st.integers(INT64_MIN, INT64_MAX)
STAMPS = st.integers(LIMITS.min_timestamp_ms - 5, LIMITS.max_timestamp_ms + 5) | st.integers(
    INT64_MIN, INT64_MAX
)


@SETTINGS
@given(st.data())
def test_encoded_label_batches_decode_as_record_by_record(data: st.DataObject) -> None:
    size = data.draw(st.integers(0, 20))

    def column(values: st.SearchStrategy[int]) -> np.ndarray[Any, np.dtype[np.int64]]:
        return np.array(data.draw(st.lists(values, min_size=size, max_size=size)), np.int64)

    payloads = encode_labels(
        transaction_id=column(IDS),
        card_id=column(IDS),
        is_fraud=column(st.integers(0, 1)),
        label_timestamp=column(STAMPS),
        fraud_scenario=column(st.integers(0, 3) | st.integers(0, INT32_MAX)),
        source=data.draw(st.text(max_size=8)),
        schema_id=schema_id_for(LABELS),
    )
    _same_as_record_by_record(payloads)


LABEL_RECORDS = st.fixed_dictionaries(
    {
        "transaction_id": IDS,
        "card_id": IDS,
        "is_fraud": st.booleans(),
        "label_timestamp": STAMPS,
        "source": st.text(max_size=8),
        "fraud_scenario": st.none() | st.integers(INT32_MIN, INT32_MAX),
    }
)


@st.composite
def _mutated_labels(draw: st.DrawFn) -> bytes:
    """A Label written by fastavro, then a few bytes flipped, inserted or deleted."""
    return damaged(draw, LABELS.encode(draw(LABEL_RECORDS)), len(HEADER), 60)


@SETTINGS
@given(st.lists(_mutated_labels(), max_size=8))
def test_mutated_labels_decode_as_record_by_record(payloads: list[bytes]) -> None:
    _same_as_record_by_record(payloads)


# --- the kernel's boolean and int kinds -------------------------------------------

SMALL_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Small",
        "fields": [
            {"name": "flag", "type": "boolean"},
            {"name": "count", "type": "int"},
            {"name": "maybe_flag", "type": ["null", "boolean"]},
            {"name": "maybe_count", "type": ["null", "int"]},
        ],
    }
)
SMALL_LAYOUT = flat_layout(SMALL_SCHEMA)
SMALL_FIELDS = ("flag", "count", "maybe_flag", "maybe_count")


def _read_small(bodies: list[bytes]) -> tuple[dict[str, np.ndarray[Any, Any]], list[bool]]:
    assert SMALL_LAYOUT is not None
    batch = FlatBatch([frame_header(1) + body for body in bodies])
    values, good = batch.read(SMALL_LAYOUT, np.arange(len(bodies)), SMALL_FIELDS)
    return values, good.tolist()


def _fastavro(body: bytes) -> dict[str, Any] | None:
    """What fastavro makes of ``body``, or ``None`` if it fails or leaves bytes over."""
    buffer = io.BytesIO(body)
    try:
        record: dict[str, Any] = fastavro.schemaless_reader(buffer, SMALL_SCHEMA, None)  # type: ignore[assignment]
    except Exception:
        return None
    return record if buffer.tell() == len(body) else None


def test_layouts_with_booleans_and_ints() -> None:
    layout: Layout | None = SMALL_LAYOUT
    assert layout == (
        ("flag", "boolean", False),
        ("count", "int", False),
        ("maybe_flag", "boolean", True),
        ("maybe_count", "int", True),
    )
    assert flat_layout(LABELS.reader.parsed) is not None


SMALL_BODIES = {
    "zeros": (b"\x00" + long_bytes(0) + b"\x00\x00", True),
    "extremes": (b"\x01" + long_bytes(INT32_MAX) + b"\x02\x01\x02" + long_bytes(INT32_MIN), True),
    "int32 min": (b"\x01" + long_bytes(INT32_MIN) + b"\x02\x00\x00", True),
    "overlong int": (b"\x00" + b"\x8e\x80\x80\x80\x80\x00" + b"\x00\x00", True),
    "boolean byte 2": (b"\x02" + long_bytes(0) + b"\x00\x00", False),
    "boolean byte 2 in a union": (b"\x00" + long_bytes(0) + b"\x02\x02\x00", False),
    "int32 max + 1": (b"\x00" + long_bytes(INT32_MAX + 1) + b"\x00\x00", False),
    "int32 min - 1": (b"\x00" + long_bytes(INT32_MIN - 1) + b"\x00\x00", False),
    "2**40 in a union": (b"\x00" + long_bytes(0) + b"\x00\x02" + long_bytes(2**40), False),
    "union branch 2": (b"\x00" + long_bytes(0) + b"\x04\x00\x00", False),
    "field missing": (b"\x00" + long_bytes(0) + b"\x00", False),
    "trailing byte": (b"\x00" + long_bytes(0) + b"\x00\x00\x00", False),
    "empty": (b"", False),
}


@pytest.mark.parametrize(("body", "good"), SMALL_BODIES.values(), ids=SMALL_BODIES.keys())
def test_booleans_and_ints_in_the_kernel(body: bytes, good: bool) -> None:
    values, read = _read_small([body])
    assert read == [good]
    assert values["flag"].dtype == np.bool_ and values["count"].dtype == np.int64
    expected = _fastavro(body)
    if good:
        assert expected is not None
        assert values["flag"].tolist() == [expected["flag"]]
        assert values["count"].tolist() == [expected["count"]]
        if expected["maybe_flag"] is not None:
            assert values["maybe_flag"].tolist() == [expected["maybe_flag"]]
        if expected["maybe_count"] is not None:
            assert values["maybe_count"].tolist() == [expected["maybe_count"]]


@SETTINGS
@given(st.lists(st.binary(max_size=12), max_size=6))
def test_the_kernel_accepts_only_what_fastavro_reads_the_same(bodies: list[bytes]) -> None:
    values, good = _read_small(bodies)
    for row, body in enumerate(bodies):
        if not good[row]:
            continue
        expected = _fastavro(body)
        assert expected is not None
        assert values["flag"][row] == expected["flag"]
        assert values["count"][row] == expected["count"]
        for name in ("maybe_flag", "maybe_count"):
            if expected[name] is not None:
                assert values[name][row] == expected[name]


def test_warm_up_covers_label_batches() -> None:
    """After warm_up, label batches of any size and content compile nothing more."""
    vectorized.warm_up()
    kernels: list[Any] = [vectorized._frame, vectorized._distinct, vectorized._read_rows]
    compiled = [len(kernel.signatures) for kernel in kernels]
    assert all(compiled)
    for size in (0, 1, 7, 300):
        payloads = encode_labels(
            transaction_id=np.arange(size),
            card_id=np.arange(size),
            is_fraud=np.arange(size) % 2,
            label_timestamp=np.full(size, TIMESTAMP),
            fraud_scenario=np.arange(size) % 3,
            schema_id=schema_id_for(LABELS),
        )
        _fresh_codec().decode_columns([*payloads, b"junk", HEADER])
    assert [len(kernel.signatures) for kernel in kernels] == compiled
