"""Engine-free pieces of the scorer: changelog buckets, label join, window stats."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.features import CardStateStore
from pipeline.features.spec import DAY_MS, HOUR_MS
from pipeline.policy import APPROVE, DECLINE, REVIEW
from pipeline.scorer.changelog import (
    ChangelogError,
    DirtyBuckets,
    StateRestorer,
    bucket_records,
    decode_bucket,
    encode_bucket,
    parse_key,
)
from pipeline.scoring.outcomes import PendingDecisions, outcome_record
from pipeline.scoring.window_stats import WindowStats

T0 = 1_522_540_800_000  # 2018-04-01T00:00:00Z


def _history(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cards = rng.integers(0, 25, n).astype(np.int64)
    ts = np.sort(T0 + rng.integers(0, 60 * DAY_MS, n)).astype(np.int64)
    amount = np.round(rng.gamma(2.0, 30.0, n), 2)
    return cards, ts, amount


def test_bucket_round_trip_and_corruption() -> None:
    ts = np.array([T0, T0 + 5], np.int64)
    amount = np.array([1.5, 2.25])
    got_ts, got_amount = decode_bucket(encode_bucket(ts, amount))
    assert got_ts.tolist() == ts.tolist() and got_amount.tolist() == amount.tolist()
    with pytest.raises(ChangelogError):
        decode_bucket(encode_bucket(ts, amount)[:-1])
    with pytest.raises(ChangelogError):
        parse_key(b"not-a-key")
    assert parse_key(b"42:17622") == (42, 17622)


def test_restored_state_gives_the_same_features_as_the_live_one() -> None:
    cards, ts, amount = _history(1)
    live = CardStateStore()
    dirty = DirtyBuckets()
    restorer = StateRestorer()
    # Process in batches, "committing" the dirty buckets after each, as the worker does.
    for lo in range(0, 300, 50):
        batch = slice(lo, lo + 50)
        live.features(cards[batch], ts[batch], amount[batch], None)
        dirty.mark(0, cards[batch], ts[batch])
        for key, value in bucket_records(live, dirty.drain(0)):
            restorer.add(key, value)
    restored = restorer.build()
    assert sorted(restored.cards()) == sorted(live.cards())
    rest = slice(300, None)
    expected = live.features(cards[rest], ts[rest], amount[rest], None)
    actual = restored.features(cards[rest], ts[rest], amount[rest], None)
    np.testing.assert_array_equal(np.isnan(expected), np.isnan(actual))
    np.testing.assert_allclose(np.nan_to_num(actual), np.nan_to_num(expected), rtol=1e-6)


def test_restorer_counts_bad_records_and_honours_tombstones() -> None:
    restorer = StateRestorer()
    restorer.add(b"7:17622", encode_bucket(np.array([T0], np.int64), np.array([3.0])))
    restorer.add(b"7:17622", None)
    restorer.add(None, b"x")
    restorer.add(b"8:1", b"garbage")
    assert restorer.bad_records == 2
    assert len(restorer.build()) == 0


def test_pending_decisions_join_and_expiry() -> None:
    pending = PendingDecisions(retention_ms=8 * DAY_MS)
    ids = np.array([1, 2, 3], np.int64)
    pending.add(
        ids,
        np.array([10, 11, 12], np.int64),
        np.array([T0, T0 + 1, T0 + 2], np.int64),
        np.array([0.1, 0.6, 0.95]),
        np.array([APPROVE, REVIEW, DECLINE], np.int8),
        "fraud",
        "v3",
        T0 + 10,
    )
    decision = pending.take(2)
    assert decision is not None and decision.card_id == 11 and decision.action == REVIEW
    assert pending.take(2) is None  # a duplicate label finds nothing
    record = outcome_record(2, decision, {"is_fraud": True, "label_timestamp": T0 + 7 * DAY_MS})
    assert record["action"] == "REVIEW" and record["is_fraud"] is True
    assert record["model_version"] == "v3"
    assert pending.expire(T0 + 8 * DAY_MS) == 0
    assert pending.expire(T0 + 8 * DAY_MS + 10) == 2
    assert len(pending) == 0


def test_window_stats_emit_after_the_grace_period() -> None:
    stats = WindowStats(length_ms=HOUR_MS, grace_ms=10 * 60_000, n_features=2, bins=4)
    ts = np.array([T0, T0 + 1000, T0 + HOUR_MS + 5], np.int64)
    scores = np.array([0.1, 0.8, 0.3])
    actions = np.array([APPROVE, REVIEW, APPROVE], np.int8)
    features = np.array([[1.0, np.nan], [3.0, 2.0], [5.0, 4.0]], np.float32)
    stats.add(ts, scores, actions, features, latency_ms=2.0)
    assert stats.due() == []
    stats.add(
        np.array([T0 + HOUR_MS + 10 * 60_000], np.int64),
        np.array([0.2]),
        np.array([APPROVE], np.int8),
        np.array([[0.0, 0.0]], np.float32),
        1.0,
    )
    (first,) = stats.due()
    record = first.record(
        worker_id="w",
        model_name="fraud",
        model_version="v1",
        feature_set_version="2",
        feature_names=["a", "b"],
    )
    assert record["window_start"] == T0 and record["window_end"] == T0 + HOUR_MS
    assert (record["count"], record["approved"], record["reviewed"], record["alerts"]) == (
        2,
        1,
        1,
        1,
    )
    assert record["score_histogram"] == [1, 0, 0, 1]
    assert record["feature_mean"] == [2.0, 1.0]  # NaN counted as 0
    assert record["feature_std"][0] == pytest.approx(1.0)
    assert [w.start_ms for w in stats.drain()] == [T0 + HOUR_MS]


def test_vectorized_day_buckets_equal_the_plain_ones() -> None:
    cards, ts, amount = _history(3, n=2000)
    store = CardStateStore()
    for lo in range(0, len(cards), 250):
        store.features(cards[lo : lo + 250], ts[lo : lo + 250], amount[lo : lo + 250], None)
    wanted = sorted({(int(c), int(t // DAY_MS)) for c, t in zip(cards, ts, strict=True)})
    wanted.append((999_999, 17_622))  # a card the store never saw: an empty bucket
    for (card, day), (key, value) in zip(wanted, bucket_records(store, wanted), strict=True):
        held_ts, held_amount = store.history(card)
        in_day = (held_ts // DAY_MS) == day
        assert key == f"{card}:{day}".encode()
        assert value == encode_bucket(held_ts[in_day], held_amount[in_day])


def test_window_watermark_is_the_slowest_partitions() -> None:
    stats = WindowStats(length_ms=HOUR_MS, grace_ms=0, n_features=1, bins=2)
    one = np.array([[1.0]], np.float32)
    approve = np.array([APPROVE], np.int8)
    stats.add(np.array([T0], np.int64), np.array([0.1]), approve, one, 1.0, np.array([0]))
    stats.add(
        np.array([T0 + 5 * HOUR_MS], np.int64), np.array([0.1]), approve, one, 1.0, np.array([1])
    )
    assert stats.due() == []  # partition 0 is still in the first hour
    stats.add(
        np.array([T0 + 2 * HOUR_MS], np.int64), np.array([0.1]), approve, one, 1.0, np.array([0])
    )
    assert [w.start_ms for w in stats.due()] == [T0]
    stats.forget([0])
    assert [w.start_ms for w in stats.due()] == [T0 + 2 * HOUR_MS]


def test_pending_decisions_wait_for_late_labels() -> None:
    pending = PendingDecisions(retention_ms=8 * DAY_MS)
    pending.add(
        np.array([1], np.int64),
        np.array([10], np.int64),
        np.array([T0], np.int64),
        np.array([0.2]),
        np.array([APPROVE], np.int8),
        "fraud",
        "v1",
        T0,
    )
    # Transactions far ahead (a lagging labels reader) do not expire it...
    assert pending.expire(T0 + 20 * DAY_MS - 16 * DAY_MS) == 0
    # ...labels read past its label time by more than a day do.
    assert pending.expire(T0 + 8 * DAY_MS + 1) == 1
