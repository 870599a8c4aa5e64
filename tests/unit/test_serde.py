"""Example-based tests of the serde: framing, errors, JSON, registry, catalog, DLQ headers."""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import FraudError
from pipeline.serde import (
    DLQ_ERROR_REASON,
    DLQ_SOURCE_OFFSET,
    DecodeError,
    EncodeError,
    Limits,
    RecordName,
    SchemaCatalog,
    SchemaError,
    Serde,
    SerdeError,
    dlq_headers,
    frame_header,
    read_schema_id,
)
from pipeline.settings import REPO_ROOT, load_settings

SERDE = Serde.local()
TX: dict[str, Any] = {
    "transaction_id": 7,
    "timestamp": 1_522_540_800_123,
    "card_id": 42,
    "terminal_id": 9,
    "amount": 57.16,
}


def _full(record: dict[str, Any]) -> dict[str, Any]:
    return {
        **record,
        "currency": "EUR",
        "channel": None,
        "merchant_id": None,
        "merchant_category": None,
    }


def _reason(payload: bytes) -> str:
    with pytest.raises(DecodeError) as caught:
        SERDE.transactions().decode(payload)
    assert caught.value.payload is payload
    assert isinstance(caught.value, SerdeError) and isinstance(caught.value, FraudError)
    return caught.value.reason


def test_framing_is_magic_byte_then_big_endian_id() -> None:
    payload = SERDE.transactions().encode(TX)
    assert payload[:5] == b"\x00\x00\x00\x00\x02"
    assert frame_header(258) == b"\x00\x00\x00\x01\x02"
    assert read_schema_id(frame_header(258)) == 258


def test_decode_fills_defaults_and_keeps_extras() -> None:
    codec = SERDE.transactions()
    assert codec.decode(codec.encode(TX)) == _full(TX)
    rich = {**TX, "currency": "USD", "channel": "ecom", "merchant_id": "m1"}
    assert codec.decode(codec.encode(rich))["channel"] == "ecom"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "truncated"),
        (b"\x00\x00", "truncated"),
        (b"\x01\x00\x00\x00\x02\x02", "bad_magic"),
        (b"garbage", "bad_magic"),
        (b"\x00\x00\x00\x03\xe7" + b"\x02" * 12, "unknown_schema_id"),
    ],
)
def test_bad_frames(payload: bytes, reason: str) -> None:
    assert _reason(payload) == reason


def test_every_truncation_is_reported_as_truncated() -> None:
    payload = SERDE.transactions().encode(TX)
    for cut in range(len(payload)):
        assert _reason(payload[:cut]) == "truncated", cut


def test_trailing_bytes_and_wrong_record_are_refused() -> None:
    payload = SERDE.transactions().encode(TX)
    assert _reason(payload + b"\x00") == "avro_decode"
    label = SERDE.codec(RecordName.LABEL).encode(
        {"transaction_id": 1, "card_id": 2, "is_fraud": True, "label_timestamp": TX["timestamp"]}
    )
    assert _reason(label) == "wrong_schema"


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": math.nan},
        {"amount": math.inf},
        {"amount": -0.01},
        {"amount": 1_000_000.01},
        {"card_id": -1},
        {"transaction_id": -5},
        {"timestamp": 0},
        {"timestamp": 5_000_000_000_000},
    ],
)
def test_impossible_values_are_invalid(changes: dict[str, Any]) -> None:
    codec = SERDE.transactions()
    payload = codec.encode({**TX, **changes})
    assert _reason(payload) == "invalid_value"
    as_json = json.dumps({**TX, **changes}).encode()  # json writes NaN/Infinity literals
    assert _reason(as_json) == "invalid_value"


def test_max_amount_is_configurable() -> None:
    strict = Serde.local(limits=Limits(max_amount=100.0)).transactions()
    with pytest.raises(DecodeError, match="amount"):
        strict.decode(strict.encode({**TX, "amount": 100.5}))


def test_json_accepts_epoch_ms_and_iso_strings() -> None:
    codec = SERDE.transactions()
    assert codec.decode(json.dumps(TX).encode()) == _full(TX)
    iso = {**TX, "timestamp": "2018-04-01T00:00:00.123", "amount": 57}
    decoded = codec.decode(b"  " + json.dumps(iso).encode())
    assert decoded["timestamp"] == 1_522_540_800_123
    assert decoded["amount"] == 57.0 and isinstance(decoded["amount"], float)
    offset = {**TX, "timestamp": "2018-04-01T02:00:00.123+02:00", "channel": "pos", "extra": 1}
    decoded = codec.decode(json.dumps(offset).encode())
    assert decoded["timestamp"] == 1_522_540_800_123 and decoded["channel"] == "pos"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "json_invalid"),
        (b'{"a": 1} trailing', "json_invalid"),
        (json.dumps({k: v for k, v in TX.items() if k != "card_id"}).encode(), "missing_field"),
        (json.dumps({**TX, "amount": "12.5"}).encode(), "wrong_type"),
        (json.dumps({**TX, "card_id": True}).encode(), "wrong_type"),
        (json.dumps({**TX, "card_id": 1.5}).encode(), "wrong_type"),
        (json.dumps({**TX, "card_id": 2**64}).encode(), "wrong_type"),
        (json.dumps({**TX, "channel": 3}).encode(), "wrong_type"),
        (json.dumps({**TX, "timestamp": "yesterday"}).encode(), "invalid_value"),
    ],
)
def test_bad_json(payload: bytes, reason: str) -> None:
    assert _reason(payload) == reason


def test_batch_decode_reports_bad_records_and_keeps_going() -> None:
    codec = SERDE.transactions()
    good = codec.encode_batch([TX, {**TX, "transaction_id": 8}])
    bad_amount = codec.encode({**TX, "amount": -3.0})
    payloads = [good[0], b"\x07junk", bad_amount, json.dumps(TX).encode(), good[1], b"{"]
    batch = codec.decode_batch(payloads)
    assert batch.indices == [0, 3, 4]
    assert [r["transaction_id"] for r in batch.records] == [7, 7, 8]
    assert [(e.index, e.reason) for e in batch.errors] == [
        (1, "bad_magic"),
        (2, "invalid_value"),
        (5, "json_invalid"),
    ]
    assert batch.errors[1].payload is bad_amount
    assert batch.errors[1].to_exception().reason == "invalid_value"
    columns = codec.decode_columns(payloads)
    assert columns.indices.tolist() == [0, 3, 4]
    assert columns.transaction_id.tolist() == [7, 7, 8]
    assert [(e.index, e.reason) for e in columns.errors] == [
        (e.index, e.reason) for e in batch.errors
    ]


def test_encode_errors() -> None:
    codec = SERDE.transactions()
    with pytest.raises(EncodeError, match="card_id"):
        codec.encode({k: v for k, v in TX.items() if k != "card_id"})
    with pytest.raises(EncodeError):
        codec.encode_batch([TX, {**TX, "amount": "lots"}])
    with pytest.raises(EncodeError):
        codec.encode_columns([1], [2], [3], [4], [5.0, 6.0])


def test_encode_columns_matches_encode_batch() -> None:
    codec = SERDE.transactions()
    rows = [TX, {**TX, "transaction_id": 8, "amount": 0.5}]
    columns = {key: [row[key] for row in rows] for key in TX}
    assert codec.encode_columns(**columns) == codec.encode_batch(rows)


def test_registry_ids_are_framed_and_decoded() -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient.new_client({"url": "mock://serde-test"})
    for other in ("Label", "Decision"):  # so registry ids differ from the local table's
        client.register_schema(f"other-{other}", _registry_schema(other))
    serde = Serde.with_registry(client)
    codec = serde.transactions()
    payload = codec.encode(TX)
    registered = client.get_latest_version("fraud.pipeline.Transaction")
    assert read_schema_id(payload) == registered.schema_id == codec.schema_id
    assert registered.schema_id != SERDE.transactions().schema_id
    assert codec.decode(payload) == _full(TX)
    assert codec.decode_columns([payload]).card_id.tolist() == [42]
    # a second process sharing the registry reads it; local ids mean nothing there
    reader = Serde.with_registry(client, auto_register=False).transactions()
    assert reader.decode(payload) == _full(TX)
    with pytest.raises(DecodeError) as caught:
        reader.decode(SERDE.transactions().encode(TX)[:1] + struct.pack(">I", 999) + payload[5:])
    assert caught.value.reason == "unknown_schema_id"


def test_registry_resolves_an_old_writer_schema() -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient.new_client({"url": "mock://serde-evolution"})
    v1 = SERDE.catalog.versions("Transaction")[0]
    old_id = client.register_schema("fraud.pipeline.Transaction", _registry_schema(v1.schema_str))
    old_payload = struct.pack(">bI", 0, old_id) + SERDE.transactions().encode(TX)[5:-7]
    assert Serde.with_registry(client).transactions().decode(old_payload) == _full(TX)


def test_registry_without_auto_register_needs_the_schema() -> None:
    serde = Serde.with_registry("mock://empty", auto_register=False)
    with pytest.raises(SerdeError, match="registry"):
        serde.transactions().encode(TX)


def test_from_settings_picks_local_or_registry() -> None:
    local = Serde.from_settings(load_settings())
    assert local.transactions().schema_id == 2
    remote = Serde.from_settings(load_settings(schema_registry_url="mock://settings"))
    assert remote.transactions().decode(remote.transactions().encode(TX)) == _full(TX)


def test_catalog_refuses_a_changed_schema_without_new_id(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "schemas", tmp_path, dirs_exist_ok=True)
    path = tmp_path / "Label.avsc"
    raw = json.loads(path.read_text())
    raw["fields"].append({"name": "note", "type": "string", "default": ""})
    path.write_text(json.dumps(raw))
    with pytest.raises(SchemaError, match="needs a new id"):
        SchemaCatalog.load(tmp_path)
    (tmp_path / "Label.avsc").unlink()
    with pytest.raises(SchemaError, match="not found"):
        SchemaCatalog.load(tmp_path)


def test_catalog_refuses_a_schema_without_id(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "schemas", tmp_path, dirs_exist_ok=True)
    (tmp_path / "Stray.avsc").write_text(
        json.dumps({"type": "record", "name": "Stray", "fields": []})
    )
    with pytest.raises(SchemaError, match="Stray"):
        SchemaCatalog.load(tmp_path)
    with pytest.raises(SchemaError, match="unknown record"):
        SERDE.codec("Nope")


def test_catalog_knows_every_record_and_time_fields() -> None:
    assert set(SERDE.catalog.names) == {str(name) for name in RecordName}
    assert SERDE.catalog.current("fraud.pipeline.Transaction").time_fields == {"timestamp"}
    assert [v.version for v in SERDE.catalog.versions("Transaction")] == [1, 2]


def test_dlq_headers() -> None:
    headers = dict(
        dlq_headers(
            "bad_magic", "x", stage="decode", topic="t", partition=3, offset=99, failed_at_ms=1
        )
    )
    assert headers[DLQ_ERROR_REASON] == b"bad_magic"
    assert headers[DLQ_SOURCE_OFFSET] == b"99"


def _registry_schema(name_or_text: str) -> Any:
    from confluent_kafka.schema_registry import Schema

    if name_or_text.startswith("{"):
        return Schema(name_or_text, "AVRO")
    return Schema(SERDE.catalog.current(name_or_text).schema_str, "AVRO")


def test_columns_read_current_frames_without_the_record_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codec = Serde.local().transactions()
    rows = [{**TX, "transaction_id": i, "channel": "pos" if i % 2 else None} for i in range(50)]
    payloads = codec.encode_batch(rows)

    def refuse(payload: bytes) -> dict[str, Any]:
        raise AssertionError("record decoder used")

    monkeypatch.setattr(codec, "_decode_unchecked", refuse)
    monkeypatch.setattr(codec, "fast_min_rows", 0)
    columns = codec.decode_columns(payloads)
    assert columns.transaction_id.tolist() == list(range(50))
    assert columns.amount.tolist() == [57.16] * 50
