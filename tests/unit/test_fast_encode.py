"""The vectorized encoders write exactly the bytes fastavro writes (property-based)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.serde import EncodeError, SchemaError, SchemaVersion, Serde
from pipeline.serde.codec import RecordCodec
from pipeline.serde.fast_encode import (
    ACTION_SYMBOLS,
    SEVERITY_SYMBOLS,
    encode_alerts,
    encode_decisions,
    encode_labels,
    encode_outcomes,
    encode_reasons,
    encode_transactions,
    schema_id_for,
)

SERDE = Serde.local()
DECISIONS = SERDE.codec("Decision")
TRANSACTIONS = SERDE.codec("Transaction")
LABELS = SERDE.codec("Label")
OUTCOMES = SERDE.codec("Outcome")
ALERTS = SERDE.codec("Alert")

LONG = st.integers(-(2**63), 2**63 - 1)
SMALL_LONG = st.integers(-(2**20), 2**40)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
DOUBLE = st.floats(allow_nan=True, allow_infinity=True)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _ints(draw: st.DrawFn, size: int, values: st.SearchStrategy[int] = LONG) -> np.ndarray:
    return np.array(draw(st.lists(values, min_size=size, max_size=size)), dtype=np.int64)


def _doubles(draw: st.DrawFn, size: int) -> np.ndarray:
    return np.array(draw(st.lists(DOUBLE, min_size=size, max_size=size)), dtype=np.float64)


@st.composite
def decision_batches(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.integers(0, 12))
    width = draw(st.integers(0, 6))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    features = np.array(
        draw(st.lists(st.floats(width=32), min_size=size * width, max_size=size * width)),
        dtype=dtype,
    ).reshape(size, width)
    reasons = draw(
        st.dictionaries(
            st.integers(0, max(size - 1, 0)),
            st.lists(st.tuples(TEXT, DOUBLE, TEXT), max_size=3),
            max_size=size,
        )
    )
    scalar = draw(st.booleans())
    batch: dict[str, Any] = {
        "transaction_id": _ints(draw, size),
        "card_id": _ints(draw, size, SMALL_LONG),
        "terminal_id": _ints(draw, size, SMALL_LONG),
        "timestamp": _ints(draw, size),
        "amount": _doubles(draw, size),
        "score": _doubles(draw, size),
        "action": np.array(
            draw(st.lists(st.integers(0, 2), min_size=size, max_size=size)), np.int8
        ),
        "features": features,
        "decided_at": draw(LONG) if scalar else _ints(draw, size),
        "processing_ms": draw(DOUBLE) if scalar else _doubles(draw, size),
        "source_partition": np.array(
            draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=size, max_size=size)),
            np.int32,
        ),
        "source_offset": _ints(draw, size),
        "model_name": draw(TEXT),
        "model_version": draw(TEXT),
        "rollout_arm": draw(st.sampled_from(["champion", "challenger", "blue", "green"])),
        "feature_set_version": draw(TEXT),
        "reasons": {row: codes for row, codes in reasons.items() if size} or None,
    }
    if draw(st.booleans()):
        batch["challenger_version"] = draw(TEXT)
        batch["challenger_score"] = _doubles(draw, size)
    return batch


def _row(value: Any, index: int) -> Any:
    return value[index].item() if isinstance(value, np.ndarray) else value


def decision_records(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The same batch as the dict records fastavro takes."""
    records = []
    for i in range(len(batch["transaction_id"])):
        challenger = batch.get("challenger_score")
        records.append(
            {
                **{
                    name: _row(batch[name], i)
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
                "action": ACTION_SYMBOLS[int(batch["action"][i])],
                "model_name": batch["model_name"],
                "model_version": batch["model_version"],
                "rollout_arm": batch.get("rollout_arm", "champion"),
                "feature_set_version": batch["feature_set_version"],
                "features": batch["features"][i].astype(np.float64).tolist(),
                "reasons": [
                    {"feature": f, "contribution": c, "text": t}
                    for f, c, t in (batch["reasons"] or {}).get(i, [])
                ],
                "challenger_version": batch.get("challenger_version"),
                "challenger_score": None if challenger is None else float(challenger[i]),
            }
        )
    return records


@FAST
@given(decision_batches())
def test_decisions_are_byte_identical_to_fastavro(batch: dict[str, Any]) -> None:
    fast = encode_decisions(**batch, schema_id=schema_id_for(DECISIONS))
    assert fast == DECISIONS.encode_batch(decision_records(batch))


@st.composite
def alert_batches(draw: st.DrawFn) -> dict[str, Any]:
    batch = draw(decision_batches())
    for name in ("features", "processing_ms", "challenger_version", "challenger_score"):
        batch.pop(name, None)
    size = len(batch["transaction_id"])
    batch["severity"] = np.array(
        draw(st.lists(st.integers(0, 3), min_size=size, max_size=size)), np.int64
    )
    return batch


@FAST
@given(alert_batches())
def test_alerts_are_byte_identical_to_fastavro(batch: dict[str, Any]) -> None:
    records = []
    for i in range(len(batch["transaction_id"])):
        reasons = (batch["reasons"] or {}).get(i, [])
        records.append(
            {
                **{
                    name: _row(batch[name], i)
                    for name in (
                        "transaction_id",
                        "card_id",
                        "terminal_id",
                        "timestamp",
                        "amount",
                        "score",
                        "decided_at",
                        "source_partition",
                        "source_offset",
                    )
                },
                "action": ACTION_SYMBOLS[int(batch["action"][i])],
                "severity": SEVERITY_SYMBOLS[int(batch["severity"][i])],
                "model_name": batch["model_name"],
                "model_version": batch["model_version"],
                "rollout_arm": batch["rollout_arm"],
                "feature_set_version": batch["feature_set_version"],
                "reasons": [{"feature": f, "contribution": c, "text": t} for f, c, t in reasons],
                "reason_texts": [t for _, _, t in reasons],
            }
        )
    assert encode_alerts(**batch, schema_id=schema_id_for(ALERTS)) == ALERTS.encode_batch(records)


def test_alert_codes_out_of_range_are_refused() -> None:
    one = np.ones(1, np.int64)
    batch: dict[str, Any] = dict(
        transaction_id=one, card_id=one, terminal_id=one, timestamp=one, amount=np.ones(1),
        score=np.ones(1), action=np.array([1]), severity=np.array([4]), decided_at=1,
        source_partition=one, source_offset=one, model_name="m", model_version="1",
        schema_id=schema_id_for(ALERTS),
    )  # fmt: skip
    with pytest.raises(EncodeError, match="severity codes"):
        encode_alerts(**batch)
    with pytest.raises(EncodeError, match="action codes"):
        encode_alerts(**{**batch, "severity": np.array([0]), "action": np.array([3])})
    with pytest.raises(EncodeError, match="severity must be"):
        encode_alerts(**{**batch, "severity": np.array([0.5])})


def test_reasons_encoded_once_are_checked_and_rekeyed_for_alerts() -> None:
    reasons = {0: [("a", 0.5, "first")], 2: [("b", 0.25, "é"), ("a", 0.125, "first")], 3: []}
    encoded = encode_reasons(reasons, 4)
    assert sorted(encoded.codes) == sorted(encoded.texts) == [0, 2]  # no reasons, no entry
    assert encoded.texts[2] == b"\x04" + b"\x04\xc3\xa9" + b"\x0afirst" + b"\x00"
    taken = encoded.take([3, 2])  # alerts of rows 3 and 2, in that order
    assert taken.size == 2 and taken.codes == {1: encoded.codes[2]}
    assert encode_reasons(encoded, 4) is encoded
    with pytest.raises(EncodeError, match="encoded for 4 rows, the batch has 3"):
        encode_reasons(encoded, 3)
    with pytest.raises(EncodeError, match="outside the batch of 2"):
        encode_reasons(reasons, 2)
    with pytest.raises(EncodeError, match="reasons of row 0 do not fit"):
        encode_reasons({0: [("a", "not a number", "t")]}, 1)


@FAST
@given(st.data())
def test_transactions_are_byte_identical_to_fastavro(data: st.DataObject) -> None:
    size = data.draw(st.integers(0, 15))
    columns = {
        name: _ints(data.draw, size)
        for name in ("transaction_id", "timestamp", "card_id", "terminal_id")
    }
    columns["amount"] = _doubles(data.draw, size)
    fast = encode_transactions(**columns, schema_id=schema_id_for(TRANSACTIONS))
    records = [{name: _row(column, i) for name, column in columns.items()} for i in range(size)]
    assert fast == TRANSACTIONS.encode_batch(records)


@FAST
@given(st.data())
def test_labels_are_byte_identical_to_fastavro(data: st.DataObject) -> None:
    size = data.draw(st.integers(0, 15))
    scenario = data.draw(st.none() | st.just(0))
    columns: dict[str, Any] = {
        "transaction_id": _ints(data.draw, size),
        "card_id": _ints(data.draw, size),
        "is_fraud": np.array(
            data.draw(st.lists(st.integers(0, 1), min_size=size, max_size=size)), np.int8
        ),
        "label_timestamp": _ints(data.draw, size),
    }
    if scenario is not None:
        columns["fraud_scenario"] = np.array(
            data.draw(st.lists(st.integers(0, 4), min_size=size, max_size=size)), np.int8
        )
    source = data.draw(TEXT)
    fast = encode_labels(**columns, source=source, schema_id=schema_id_for(LABELS))
    records = [
        {
            "transaction_id": int(columns["transaction_id"][i]),
            "card_id": int(columns["card_id"][i]),
            "is_fraud": bool(columns["is_fraud"][i]),
            "label_timestamp": int(columns["label_timestamp"][i]),
            "source": source,
            "fraud_scenario": (
                int(columns["fraud_scenario"][i]) or None if "fraud_scenario" in columns else None
            ),
        }
        for i in range(size)
    ]
    assert fast == LABELS.encode_batch(records)


@FAST
@given(st.data())
def test_outcomes_are_byte_identical_to_fastavro(data: st.DataObject) -> None:
    size = data.draw(st.integers(0, 15))
    models = data.draw(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=3))
    columns: dict[str, Any] = {
        "transaction_id": _ints(data.draw, size),
        "card_id": _ints(data.draw, size),
        "timestamp": _ints(data.draw, size),
        "score": _doubles(data.draw, size),
        "action": _ints(data.draw, size, st.integers(0, 2)),
        "model_index": _ints(data.draw, size, st.integers(0, len(models) - 1)),
        "is_fraud": np.array(data.draw(st.lists(st.booleans(), min_size=size, max_size=size))),
        "decided_at": _ints(data.draw, size),
        "label_timestamp": _ints(data.draw, size),
    }
    fast = encode_outcomes(**columns, models=models, schema_id=schema_id_for(OUTCOMES))
    records = [
        {
            "transaction_id": int(columns["transaction_id"][i]),
            "card_id": int(columns["card_id"][i]),
            "timestamp": int(columns["timestamp"][i]),
            "score": float(columns["score"][i]),
            "action": ACTION_SYMBOLS[int(columns["action"][i])],
            "model_name": models[int(columns["model_index"][i])][0],
            "model_version": models[int(columns["model_index"][i])][1],
            "rollout_arm": "champion",
            "challenger_version": None,
            "challenger_score": None,
            "is_fraud": bool(columns["is_fraud"][i]),
            "decided_at": int(columns["decided_at"][i]),
            "label_timestamp": int(columns["label_timestamp"][i]),
        }
        for i in range(size)
    ]
    assert fast == OUTCOMES.encode_batch(records)


def test_outcome_columns_out_of_range_are_refused() -> None:
    one = np.ones(2, np.int64)
    good: dict[str, Any] = dict(
        transaction_id=one,
        card_id=one,
        timestamp=one,
        score=np.ones(2),
        action=np.array([0, 2]),
        models=[("fraud", "v1")],
        model_index=np.zeros(2, np.int64),
        is_fraud=np.array([0, 1]),
        decided_at=one,
        label_timestamp=one,
        schema_id=schema_id_for(OUTCOMES),
    )
    assert len(encode_outcomes(**good)) == 2
    for change, message in [
        ({"action": np.array([0, 3])}, "action codes"),
        ({"model_index": np.array([0, 1])}, "model_index"),
        ({"is_fraud": np.array([0, 2])}, "is_fraud"),
        ({"score": np.ones(3)}, "score has shape"),
    ]:
        with pytest.raises(EncodeError, match=message):
            encode_outcomes(**(good | change))


def test_a_realistic_batch_mixes_varint_lengths_and_sparse_reasons() -> None:
    rng = np.random.default_rng(7)
    size = 500
    batch: dict[str, Any] = {
        "transaction_id": np.arange(8150, 8150 + size),  # crosses the 2- to 3-byte boundary
        "card_id": rng.integers(0, 5000, size),
        "terminal_id": rng.integers(0, 10_000, size),
        "timestamp": 1_522_540_800_000 + np.sort(rng.integers(0, 10**9, size)),
        "amount": np.round(rng.uniform(0, 300, size), 2),
        "score": rng.random(size),
        "action": rng.choice([0, 0, 0, 1, 2], size).astype(np.int8),
        "features": rng.random((size, 20)).astype(np.float32),
        "decided_at": 1_700_000_000_000 + rng.integers(0, 5, size),
        "processing_ms": 0.25,
        "source_partition": 2,
        "source_offset": np.arange(size),
        "model_name": "fraud-xgb",
        "model_version": "3",
        "feature_set_version": "v1",
        "reasons": {7: [("amount", 1.5, "amount is unusually high")], 499: [("é", -0.1, "")]},
    }
    fast = encode_decisions(**batch, schema_id=schema_id_for(DECISIONS))
    assert fast == DECISIONS.encode_batch(decision_records(batch))
    decoded = DECISIONS.decode(fast[7])
    assert decoded["reasons"][0]["feature"] == "amount"
    assert math.isclose(decoded["features"][3], float(batch["features"][7, 3]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"action": np.array([3])}, "action codes"),
        ({"source_partition": np.array([2**31])}, "Avro int"),
        ({"features": np.zeros((2, 3))}, "features has shape"),
        ({"card_id": np.array([1.5])}, "integers"),
        ({"reasons": {4: [("a", 1.0, "b")]}}, "outside the batch"),
        ({"reasons": {0: [("a", "x", "b")]}}, "do not fit"),
    ],
)
def test_bad_columns_raise_encode_error(change: dict[str, Any], message: str) -> None:
    batch: dict[str, Any] = {
        "transaction_id": np.array([1]),
        "card_id": np.array([2]),
        "terminal_id": np.array([3]),
        "timestamp": np.array([4]),
        "amount": np.array([5.0]),
        "score": np.array([0.5]),
        "action": np.array([1]),
        "features": np.zeros((1, 3)),
        "decided_at": 6,
        "processing_ms": 0.1,
        "source_partition": np.array([0]),
        "source_offset": np.array([7]),
        "model_name": "m",
        "model_version": "1",
        "schema_id": 3,
    }
    with pytest.raises(EncodeError, match=message):
        encode_decisions(**(batch | change))


def test_a_codec_with_another_layout_is_refused() -> None:
    raw = dict(DECISIONS.writer.raw)
    raw["fields"] = [*raw["fields"], {"name": "extra", "type": "long", "default": 0}]
    evolved = RecordCodec(SchemaVersion.from_raw(raw, schema_id=99), SERDE.ids)
    with pytest.raises(SchemaError, match="layout"):
        schema_id_for(evolved)
    assert schema_id_for(DECISIONS) == DECISIONS.schema_id
