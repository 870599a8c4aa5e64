"""The global table's content: records, tombstones, lazy rebuilds, empty answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.features.offline import feature_frame
from pipeline.features.spec import DAY_MS, FEATURES
from pipeline.serde import Serde
from pipeline.terminal import HistoryRecord, HistoryStore
from pipeline.terminal.errors import TerminalFeaturesError
from pipeline.terminal.record import RECORD_NAME, terminal_from_key, terminal_key

DELAY = 7 * DAY_MS
T0 = 1_600_000_000_000


def record(
    terminal: int, ts: list[int], fraud: list[int], as_of: int = T0 + 40 * DAY_MS
) -> HistoryRecord:
    return HistoryRecord(
        terminal, as_of, DELAY, np.asarray(ts, np.int64), np.asarray(fraud, np.uint8)
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_record_round_trips_through_the_codec() -> None:
    codec = Serde.local().codec(RECORD_NAME)
    original = record(7, [T0, T0 + 5, T0 + DAY_MS], [0, 1, 0])
    back = HistoryRecord.from_avro(codec.decode(codec.encode(original.to_avro())))
    assert back.terminal_id == 7 and back.as_of_ms == original.as_of_ms
    assert back.label_delay_ms == DELAY
    assert back.ts_ms.tolist() == original.ts_ms.tolist()
    assert back.is_fraud.tolist() == [0, 1, 0]
    assert terminal_from_key(terminal_key(123456789)) == 123456789


def test_malformed_records_and_keys_raise() -> None:
    with pytest.raises(TerminalFeaturesError, match="fraud flags"):
        record(1, [T0, T0 + 1], [0])
    bad = record(1, [T0], [0]).to_avro() | {"timestamps": b"\x00" * 7}
    with pytest.raises(TerminalFeaturesError, match="multiple of 8"):
        HistoryRecord.from_avro(bad)
    with pytest.raises(TerminalFeaturesError, match="decimal"):
        terminal_from_key(b"abc")


def test_unknown_terminal_gets_what_the_offline_evaluator_gives() -> None:
    store = HistoryStore(DELAY)
    store.apply(record(1, [T0], [1]))
    prims = store.primitives(np.asarray([2, 1]), np.asarray([T0 + 10 * DAY_MS] * 2))
    for counts in prims.count.values():
        assert counts[0] == 0
    assert np.isnan(prims.known_fraud_age_ms[0])
    assert prims.count[DAY_MS * 30][1] == 1 and prims.frauds[DAY_MS * 30][1] == 1
    # offline: a terminal whose only earlier transaction is too recent to be matured
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime([T0, T0 + DAY_MS], unit="ms"),
            "card_id": [1, 1],
            "terminal_id": [2, 2],
            "amount": [10.0, 20.0],
            "is_fraud": [1, 0],
        }
    )
    offline = feature_frame(frame, DELAY).iloc[1]
    empty = HistoryStore(DELAY).primitives(np.asarray([2]), np.asarray([T0 + DAY_MS]))
    from pipeline.features.derive import terminal_feature_frame

    online = terminal_feature_frame(empty).iloc[0]
    for spec in FEATURES:
        if spec.entity == "terminal":
            assert np.array_equal(
                np.float32(online[spec.name]), offline[spec.name], equal_nan=True
            ), spec.name


def test_tombstone_removes_a_terminal() -> None:
    store = HistoryStore(DELAY)
    store.apply(record(1, [T0], [0]))
    store.apply(record(2, [T0], [0]))
    store.remove(1)
    store.remove(42)  # unknown: harmless
    assert len(store) == 1 and 1 not in store
    prims = store.primitives(np.asarray([1, 2]), np.asarray([T0 + DELAY + 1] * 2))
    assert prims.count[DAY_MS].tolist() == [0, 1]


def test_rebuild_is_lazy_and_rate_limited() -> None:
    clock = FakeClock()
    store = HistoryStore(DELAY, rebuild_interval_s=1.0, clock=clock)
    query = (np.asarray([1]), np.asarray([T0 + DELAY + 1]))
    store.apply(record(1, [T0], [0]))
    assert store.primitives(*query).count[DAY_MS].tolist() == [1]  # first query builds
    assert store.rebuilds == 1
    store.apply(record(1, [T0, T0 + 1], [0, 0]))
    clock.now = 0.5
    assert store.primitives(*query).count[DAY_MS].tolist() == [1]  # within the interval: stale
    clock.now = 1.0
    assert store.primitives(*query).count[DAY_MS].tolist() == [2]
    assert store.primitives(*query).count[DAY_MS].tolist() == [2]
    assert store.rebuilds == 2  # no change, no rebuild
    store.apply(record(1, [T0], [0]))
    store.history(force=True)
    assert store.rebuilds == 3


def test_latest_as_of_and_delay_mismatches_are_tracked() -> None:
    store = HistoryStore(DELAY)
    assert store.as_of_ms is None
    store.apply(record(1, [T0], [0], as_of=T0 + 9 * DAY_MS))
    store.apply(record(2, [T0], [0], as_of=T0 + 8 * DAY_MS))
    assert store.as_of_ms == T0 + 9 * DAY_MS
    assert store.delay_mismatches == 0
    store.apply(HistoryRecord(3, T0, DAY_MS, np.zeros(0, np.int64), np.zeros(0, np.uint8)))
    assert store.delay_mismatches == 1
