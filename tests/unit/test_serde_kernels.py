"""Edge cases of the compiled batch decoder and encoder.

The decoder must accept exactly the rows it can read with certainty and give
the record decoder everything else; the encoder must write fastavro's bytes
for any value, including the extremes of a long and the odd doubles.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import damaged

from pipeline.serde import (
    EncodeError,
    Serde,
    TransactionCodec,
    fast_encode,
    frame_header,
    vectorized,
)
from pipeline.serde.columnar import COLUMNS
from pipeline.serde.fast_encode import (
    RowPacker,
    encode_decisions,
    encode_labels,
    encode_transactions,
    long_bytes,
    schema_id_for,
    string_bytes,
)
from pipeline.serde.vectorized import FlatBatch, flat_layout

SERDE = Serde.local()
TRANSACTIONS = SERDE.transactions()
DECISIONS = SERDE.codec("Decision")
LABELS = SERDE.codec("Label")
HEADER = frame_header(TRANSACTIONS.schema_id)
LAYOUT = flat_layout(TRANSACTIONS.reader.parsed)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TIMESTAMP = 1_522_540_800_123


def _body(
    transaction_id: int | bytes = 7,
    timestamp: int | bytes = TIMESTAMP,
    card_id: int | bytes = 42,
    terminal_id: int | bytes = 9,
    amount: bytes = struct.pack("<d", 57.16),
    rest: bytes = string_bytes("EUR") + b"\x00\x00\x00",
) -> bytes:
    """A Transaction body written by hand, field by field (bytes are written as they are)."""
    ids = (transaction_id, timestamp, card_id, terminal_id)
    return b"".join(v if isinstance(v, bytes) else long_bytes(v) for v in ids) + amount + rest


def _fresh_codec() -> TransactionCodec:
    return Serde.local().transactions()


def _read(payloads: list[bytes]) -> tuple[dict[str, np.ndarray], list[bool]]:
    assert LAYOUT is not None
    batch = FlatBatch(payloads)
    rows = np.flatnonzero(batch.schema_ids() == TRANSACTIONS.schema_id)
    assert rows.tolist() == list(range(len(payloads)))
    values, good = batch.read(LAYOUT, rows, COLUMNS)
    return values, good.tolist()


def _same_as_record_by_record(payloads: list[bytes]) -> None:
    codec = _fresh_codec()
    columns = codec.decode_columns(payloads)
    batch = codec.decode_batch(payloads)
    assert columns.indices.tolist() == batch.indices
    assert [(e.index, e.reason, e.message) for e in columns.errors] == [
        (e.index, e.reason, e.message) for e in batch.errors
    ]
    for name in COLUMNS:
        column = getattr(columns, name)
        assert column.tolist() == [record[name] for record in batch.records]


def _refusing(codec: TransactionCodec, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the record decoder count its calls (by payload length) on ``codec``."""
    calls: list[int] = []
    decode: Callable[[bytes], dict[str, Any]] = codec._decode_unchecked

    def counting(payload: bytes) -> dict[str, Any]:
        calls.append(len(payload))
        return decode(payload)

    monkeypatch.setattr(codec, "_decode_unchecked", counting)
    return calls


# --- decode -------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 1, 63, -64, 64, 2**31, INT64_MIN, INT64_MAX])
def test_longs_of_every_length_are_read_exactly(value: int) -> None:
    values, good = _read([HEADER + _body(transaction_id=value, card_id=-value - 1)])
    assert good == [True]
    assert values["transaction_id"].tolist() == [value]
    assert values["card_id"].tolist() == [-value - 1]


def test_the_tenth_varint_byte_may_only_hold_bit_63() -> None:
    widest = long_bytes(INT64_MIN)
    assert len(widest) == 10 and widest[-1] == 0x01
    too_wide = widest[:-1] + b"\x02"  # bit 64
    eleven = widest[:-1] + b"\x81\x00"  # an eleventh byte
    payloads = [HEADER + _body(timestamp=varint) for varint in (widest, too_wide, eleven)]
    values, good = _read(payloads)
    assert good == [True, False, False]
    assert values["timestamp"][0] == INT64_MIN
    _same_as_record_by_record(payloads)


def test_overlong_varints_are_read_as_fastavro_reads_them() -> None:
    padded = HEADER + _body(transaction_id=b"\x8e\x00")  # 7 on two bytes
    null_branch = HEADER + _body(rest=string_bytes("EUR") + b"\x80\x00\x00\x00")
    values, good = _read([padded, null_branch])
    assert good == [True, True] and values["transaction_id"].tolist() == [7, 7]
    _same_as_record_by_record([padded, null_branch])


@pytest.mark.parametrize(
    "amount",
    [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308],
)
def test_doubles_keep_their_bits(amount: float) -> None:
    bits = struct.pack("<d", amount)
    values, good = _read([HEADER + _body(amount=bits)])
    assert good == [True]
    assert values["amount"].tobytes() == bits
    _same_as_record_by_record([HEADER + _body(amount=bits)])


def test_a_nan_payload_survives_the_kernel() -> None:
    bits = bytes.fromhex("0100000000fcff7f")  # little-endian: a NaN with a payload
    values, good = _read([HEADER + _body(amount=bits)])
    assert good == [True] and values["amount"].tobytes() == bits


def test_empty_batch() -> None:
    columns = _fresh_codec().decode_columns([])
    assert len(columns) == 0 and columns.errors == []
    assert columns.amount.dtype == np.float64 and columns.transaction_id.dtype == np.int64
    values, good = _read([])
    assert good == [] and values["amount"].tolist() == []


def test_a_single_row_is_read_by_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = _fresh_codec()
    calls = _refusing(codec, monkeypatch)
    columns = codec.decode_columns([HEADER + _body()])
    assert calls == []
    assert columns.transaction_id.tolist() == [7]
    assert columns.timestamp.tolist() == [TIMESTAMP]
    assert columns.amount.tolist() == [57.16]


def test_non_ascii_strings_go_to_the_record_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = HEADER + _body()
    accented = HEADER + _body(rest=string_bytes("EUR") + b"\x02" + string_bytes("café") + b"\0\0")
    bad_utf8 = HEADER + _body(rest=string_bytes("EUR") + b"\x02\x02\xff\xfe\x00\x00")
    payloads = [plain, accented, bad_utf8]
    _, good = _read(payloads)
    assert good == [True, False, False]
    codec = _fresh_codec()
    calls = _refusing(codec, monkeypatch)
    columns = codec.decode_columns(payloads)
    assert calls == [len(accented), len(bad_utf8)]
    assert columns.indices.tolist() == [0, 1]
    assert [e.index for e in columns.errors] == [2]
    _same_as_record_by_record(payloads)


def test_every_truncation_is_refused() -> None:
    payload = HEADER + _body(transaction_id=INT64_MAX, rest=string_bytes("EUR") + b"\x02\x02ab\0\0")
    prefixes = [payload[:cut] for cut in range(len(payload))]
    framed = [p for p in prefixes if len(p) >= len(HEADER)]
    _, good = _read(framed)
    assert not any(good)
    _same_as_record_by_record([*prefixes, payload])


@pytest.mark.parametrize(
    "rest",
    [
        string_bytes("EUR") + b"\x04\x00\x00",  # union branch 2
        string_bytes("EUR") + b"\x01\x00\x00",  # union branch -1
        b"\x01EUR\x00\x00\x00",  # negative string length
        b"\x7eEUR\x00\x00\x00",  # string longer than the payload
        long_bytes(INT64_MAX) + b"EUR\x00\x00\x00",  # a length that overflows a position
        long_bytes(2**62) + b"\x02" + long_bytes(2**62) + b"\x02" + long_bytes(2**62) + b"\x00",
        string_bytes("EUR") + b"\x00\x00\x00\x00",  # a byte after the record
        string_bytes("EUR") + b"\x00\x00",  # a field missing
    ],
)
def test_malformed_tails_are_refused(rest: bytes) -> None:
    payload = HEADER + _body(rest=rest)
    _, good = _read([payload])
    assert good == [False]
    _same_as_record_by_record([payload])


@st.composite
def _mutated_payloads(draw: st.DrawFn) -> bytes:
    """A Transaction written by fastavro, then a few bytes flipped, inserted or deleted."""
    text = st.none() | st.text(st.characters(codec="utf-8"), max_size=6)
    record = {
        "transaction_id": draw(st.integers(INT64_MIN, INT64_MAX)),
        "timestamp": draw(st.integers(0, 2**42)),
        "card_id": draw(st.integers(-1, 2**40)),
        "terminal_id": draw(st.integers(0, 10**6)),
        "amount": draw(st.floats(allow_nan=True, allow_infinity=True)),
        "currency": draw(st.text(max_size=4)),
        "channel": draw(text),
        "merchant_id": draw(text),
        "merchant_category": draw(text),
    }
    return damaged(draw, TRANSACTIONS.encode(record), len(HEADER), 80)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mutated_payloads(), max_size=6))
def test_mutated_payloads_decode_as_record_by_record(payloads: list[bytes]) -> None:
    _same_as_record_by_record(payloads)


def test_schema_ids_and_frames() -> None:
    good_frame = HEADER + _body()
    v1 = frame_header(1) + _body(rest=b"")
    payloads = [b"", b"\x00\x00", b"\x01" + good_frame[1:], v1, good_frame, v1]
    batch = FlatBatch(payloads)
    assert batch.schema_ids().tolist() == [-1, -1, -1, 1, TRANSACTIONS.schema_id, 1]
    assert batch.distinct_ids() == [1, TRANSACTIONS.schema_id]
    _same_as_record_by_record(payloads)


# --- encode -------------------------------------------------------------------

EXTREMES = np.array([0, -1, 1, 63, -64, 64, -65, INT64_MIN, INT64_MAX, 2**31, -(2**31)])
ODD_DOUBLES = np.array(
    [
        math.nan,
        math.inf,
        -math.inf,
        -0.0,
        5e-324,
        1.7976931348623157e308,
        0.1,
        -2.5,
        1e-300,
        3.0,
        7.0,
    ]
)


def _decision_batch(size: int, width: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(size)
    return {
        "transaction_id": np.resize(EXTREMES, size),
        "card_id": np.resize(EXTREMES[::-1], size),
        "terminal_id": rng.integers(0, 10**6, size),
        "timestamp": np.full(size, TIMESTAMP),
        "amount": np.resize(ODD_DOUBLES, size),
        "score": np.resize(ODD_DOUBLES[::-1], size),
        "action": rng.integers(0, 3, size),
        "features": rng.random((size, width)).astype(np.float32),
        "decided_at": INT64_MIN,
        "processing_ms": math.nan,
        "source_partition": np.resize(np.array([0, 2**31 - 1, -(2**31)], np.int32), size),
        "source_offset": np.resize(EXTREMES, size),
        "model_name": "fraud-xgb",
        "model_version": "3",
        "feature_set_version": "v1",
    }


def _records(batch: dict[str, Any]) -> list[dict[str, Any]]:
    size = len(batch["transaction_id"])
    reasons = batch.get("reasons") or {}
    scalar = {"decided_at", "processing_ms"}
    return [
        {
            **{
                name: batch[name] if name in scalar else batch[name][i].item()
                for name in (
                    "transaction_id",
                    "card_id",
                    "terminal_id",
                    "timestamp",
                    "amount",
                    "score",
                    "decided_at",
                    "processing_ms",
                    "source_partition",
                    "source_offset",
                )
            },
            "action": fast_encode.ACTION_SYMBOLS[int(batch["action"][i])],
            "model_name": batch["model_name"],
            "model_version": batch["model_version"],
            "rollout_arm": "champion",
            "feature_set_version": batch["feature_set_version"],
            "features": batch["features"][i].astype(np.float64).tolist(),
            "reasons": [
                {"feature": f, "contribution": c, "text": t} for f, c, t in reasons.get(i, [])
            ],
            "challenger_version": None,
            "challenger_score": None,
        }
        for i in range(size)
    ]


@pytest.mark.parametrize("size", [0, 1, 2, 11, 300])
def test_decisions_with_extreme_values_match_fastavro(size: int) -> None:
    batch = _decision_batch(size)
    fast = encode_decisions(**batch, schema_id=schema_id_for(DECISIONS))
    assert len(fast) == size
    assert fast == DECISIONS.encode_batch(_records(batch))


def test_nan_payload_bits_are_written_as_fastavro_writes_them() -> None:
    batch = _decision_batch(2)
    odd_nan = np.frombuffer(bytes.fromhex("0100000000fcff7f"), "<f8")[0]
    batch["amount"] = np.array([odd_nan, -odd_nan])
    fast = encode_decisions(**batch, schema_id=schema_id_for(DECISIONS))
    assert fast == DECISIONS.encode_batch(_records(batch))
    assert bytes.fromhex("0100000000fcff7f") in fast[0]


def test_rows_of_very_different_lengths_and_reasons_at_both_ends() -> None:
    size = 40
    batch = _decision_batch(size, width=150)  # rows of over a thousand bytes
    long_text = "x" * 20_000  # a row of over ten thousand bytes
    batch["reasons"] = {
        0: [("amount", 1.5, "amount is unusually high"), ("é", -0.1, "")],
        17: [("card", 0.25, long_text)],
        size - 1: [("terminal", math.inf, "ü" * 3)],
    }
    fast = encode_decisions(**batch, schema_id=schema_id_for(DECISIONS))
    assert fast == DECISIONS.encode_batch(_records(batch))
    assert len(fast[17]) > 20_000 > len(fast[16]) > 1000


def test_transactions_and_labels_at_the_extremes() -> None:
    size = len(EXTREMES)
    fast = encode_transactions(
        transaction_id=EXTREMES,
        timestamp=EXTREMES[::-1],
        card_id=EXTREMES,
        terminal_id=EXTREMES,
        amount=ODD_DOUBLES,
        schema_id=schema_id_for(TRANSACTIONS),
    )
    records = [
        {
            "transaction_id": int(EXTREMES[i]),
            "timestamp": int(EXTREMES[::-1][i]),
            "card_id": int(EXTREMES[i]),
            "terminal_id": int(EXTREMES[i]),
            "amount": float(ODD_DOUBLES[i]),
        }
        for i in range(size)
    ]
    assert fast == TRANSACTIONS.encode_batch(records)
    scenario = np.array([0, 1, 2**31 - 1, 0, 5, 64, 0, 1, 0, 3, 0])
    labels = encode_labels(
        transaction_id=EXTREMES,
        card_id=EXTREMES[::-1],
        is_fraud=scenario > 0,
        label_timestamp=EXTREMES,
        fraud_scenario=scenario,
        source="simulator",
        schema_id=schema_id_for(LABELS),
    )
    expected = LABELS.encode_batch(
        {
            "transaction_id": int(EXTREMES[i]),
            "card_id": int(EXTREMES[::-1][i]),
            "is_fraud": bool(scenario[i]),
            "label_timestamp": int(EXTREMES[i]),
            "source": "simulator",
            "fraud_scenario": int(scenario[i]) or None,
        }
        for i in range(size)
    )
    assert labels == expected


def test_encoded_transactions_are_read_back_by_the_kernel() -> None:
    size = len(EXTREMES)
    ids = np.abs(EXTREMES + 1)
    payloads = encode_transactions(
        transaction_id=ids,
        timestamp=np.full(size, TIMESTAMP),
        card_id=ids[::-1],
        terminal_id=ids,
        amount=np.linspace(0, 100, size),
        schema_id=schema_id_for(TRANSACTIONS),
    )
    values, good = _read(payloads)
    assert all(good)
    assert values["transaction_id"].tolist() == ids.tolist()
    assert values["amount"].tolist() == np.linspace(0, 100, size).tolist()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source_partition": np.array([-(2**31) - 1, 0])}, "Avro int"),
        ({"amount": np.array([1.0])}, "amount has shape"),
        ({"score": 0.5}, "score has shape"),
        ({"processing_ms": np.ones(3)}, "double column"),
        ({"card_id": np.array([1, 2, 3])}, "card_id has shape"),
        ({"source_offset": np.array([2**64 - 1, 0], np.uint64)}, "Avro long"),
    ],
)
def test_bad_columns_still_raise_encode_error(change: dict[str, Any], message: str) -> None:
    batch = _decision_batch(2) | change
    with pytest.raises(EncodeError, match=message):
        encode_decisions(**batch, schema_id=1)


def test_row_packer_pieces_in_order() -> None:
    rows = RowPacker(3, b"H")
    rows.long(np.array([1, -300, INT64_MAX]), "a")
    rows.constant(b"c")
    rows.nullable_long(np.array([5, 6, 7]), np.array([True, False, True]), "b")
    rows.double(np.array([1.0, 2.0, 3.0]))
    rows.double(0.5)
    rows.fixed(np.array([[1], [2], [3]], np.uint8))
    rows.sparse(b"d", {1: b"XYZ"})
    rows.long(9, "k")
    expected = [
        b"H"
        + long_bytes(a)
        + b"c"
        + (b"\x02" + long_bytes(b) if b is not None else b"\x00")
        + struct.pack("<dd", x, 0.5)
        + bytes([f])
        + s
        + long_bytes(9)
        for a, b, x, f, s in zip(
            [1, -300, INT64_MAX],
            [5, None, 7],
            [1.0, 2.0, 3.0],
            [1, 2, 3],
            [b"d", b"XYZ", b"d"],
            strict=True,
        )
    ]
    assert rows.pack() == expected


def test_row_packer_refuses_sparse_rows_outside_the_batch() -> None:
    rows = RowPacker(2)
    with pytest.raises(EncodeError, match="outside the batch"):
        rows.sparse(b"", {2: b"x"})
    assert RowPacker(0, b"H").pack() == []
    assert RowPacker(2).pack() == [b"", b""]


# --- compilation ----------------------------------------------------------------


def test_warm_up_compiles_every_hot_path_kernel() -> None:
    """After warm_up, batches of any size and content compile nothing more."""
    fast_encode.warm_up()
    vectorized.warm_up()
    kernels: list[Any] = [
        fast_encode._pack_rows,
        vectorized._frame,
        vectorized._distinct,
        vectorized._read_rows,
    ]
    compiled = [len(kernel.signatures) for kernel in kernels]
    assert all(compiled)
    for size in (0, 1, 7, 300):
        batch = _decision_batch(size)
        if size:
            batch["reasons"] = {size - 1: [("a", 1.0, "b")]}
        encode_decisions(**batch, schema_id=schema_id_for(DECISIONS))
        payloads = encode_transactions(
            transaction_id=np.arange(size),
            timestamp=np.full(size, TIMESTAMP),
            card_id=np.arange(size),
            terminal_id=np.arange(size),
            amount=np.ones(size),
            schema_id=schema_id_for(TRANSACTIONS),
        )
        encode_labels(
            transaction_id=np.arange(size),
            card_id=np.arange(size),
            is_fraud=np.zeros(size, np.int8),
            label_timestamp=np.full(size, TIMESTAMP),
            fraud_scenario=np.arange(size) % 3,
            schema_id=schema_id_for(LABELS),
        )
        _fresh_codec().decode_columns([*payloads, b"junk", HEADER])
    assert [len(kernel.signatures) for kernel in kernels] == compiled
