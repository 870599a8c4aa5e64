"""Engine-free pieces of the scorer: state changelog, label join, window stats."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.features import CardStateStore
from pipeline.features.spec import DAY_MS, HOUR_MS
from pipeline.policy import APPROVE, DECLINE, REVIEW
from pipeline.scorer.changelog import (
    ChangelogBuffer,
    ChangelogError,
    Rows,
    StateRestorer,
    decode_frame,
    encode_frame,
    frame_key,
)
from pipeline.scoring.outcomes import OutcomeBatch, PendingDecisions
from pipeline.scoring.window_stats import WindowStats, partition_maxima

T0 = 1_522_540_800_000  # 2018-04-01T00:00:00Z


def _history(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cards = rng.integers(0, 25, n).astype(np.int64)
    ts = np.sort(T0 + rng.integers(0, 60 * DAY_MS, n)).astype(np.int64)
    amount = np.round(rng.gamma(2.0, 30.0, n), 2)
    return cards, ts, amount


def _rows(cards: np.ndarray, ts: np.ndarray, amount: np.ndarray, first: int = 0) -> Rows:
    offset = np.arange(first, first + len(cards), dtype=np.int64)
    return Rows(offset, cards.astype(np.int64), ts.astype(np.int64), amount.astype(np.float64))


def test_frame_round_trip_and_corruption() -> None:
    rows = _rows(np.array([7, 9]), np.array([T0, T0 + 5]), np.array([1.5, 2.25]), first=40)
    back = decode_frame(encode_frame(rows))
    for field in ("offset", "card_id", "ts_ms", "amount"):
        assert getattr(back, field).tolist() == getattr(rows, field).tolist()
    assert frame_key(3, rows) == b"3:40-41"
    with pytest.raises(ChangelogError):
        decode_frame(encode_frame(rows)[:-1])
    with pytest.raises(ChangelogError):
        decode_frame(b"CDB1" + encode_frame(rows)[4:])


def test_buffer_splits_frames_by_partition_in_input_order() -> None:
    buffer = ChangelogBuffer(max_frame_rows=2)
    cards = np.array([1, 2, 3, 4, 5])
    ts = T0 + np.arange(5, dtype=np.int64)
    buffer.append(np.array([0, 1, 0, 0, 1]), _rows(cards, ts, np.ones(5)))
    buffer.append(np.array([1]), _rows(np.array([6]), np.array([T0 + 9]), np.ones(1), first=5))
    assert len(buffer) == 6
    frames = buffer.drain()
    assert len(buffer) == 0 and buffer.drain() == []
    got = [(part, key, decode_frame(value).card_id.tolist()) for part, key, value in frames]
    assert got == [
        (0, b"0:0-2", [1, 3]),
        (0, b"0:3-3", [4]),
        (1, b"1:1-4", [2, 5]),
        (1, b"1:5-5", [6]),
    ]
    buffer.append(np.array([0, 1]), _rows(np.array([1, 2]), ts[:2], np.ones(2)))
    buffer.forget({1})
    assert [(part, decode_frame(v).card_id.tolist()) for part, _, v in buffer.drain()] == [(0, [1])]


def test_restored_state_gives_the_same_features_as_the_live_one() -> None:
    cards, ts, amount = _history(1)
    ts[120] = ts[119] - 5_000  # a late row: the live store gives it its card's latest time
    cards[120] = cards[119]
    live = CardStateStore()
    buffer = ChangelogBuffer(max_frame_rows=40)
    restorer = StateRestorer()
    # Process in batches, writing the buffered rows after each, as the worker does.
    for lo in range(0, 300, 50):
        batch = slice(lo, lo + 50)
        live.features(cards[batch], ts[batch], amount[batch], None)
        buffer.append(np.zeros(50, np.int64), _rows(cards[batch], ts[batch], amount[batch], lo))
        for _, key, value in buffer.drain():
            restorer.add(key, value)
    restored = restorer.build(committed_offset=300)
    assert sorted(restored.cards()) == sorted(live.cards())
    for card in live.cards():
        for got, want in zip(restored.history(card), live.history(card), strict=True):
            assert got.tolist() == want.tolist()
    rest = slice(300, None)
    expected = live.features(cards[rest], ts[rest], amount[rest], None)
    actual = restored.features(cards[rest], ts[rest], amount[rest], None)
    np.testing.assert_array_equal(np.isnan(expected), np.isnan(actual))
    np.testing.assert_allclose(np.nan_to_num(actual), np.nan_to_num(expected), rtol=1e-6)


def test_restore_keeps_committed_inputs_once_and_counts_bad_records() -> None:
    rows = _rows(np.array([7, 7, 8]), T0 + np.arange(3, dtype=np.int64), np.array([1.0, 2, 3]))
    restorer = StateRestorer()
    restorer.add(b"0:0-2", encode_frame(rows))
    restorer.add(b"0:0-2", encode_frame(rows))  # written twice (at-least-once replay)
    restorer.add(b"0:x", None)
    restorer.add(None, b"x")
    restorer.add(b"0:1-1", b"garbage")
    assert restorer.bad_records == 2 and restorer.records == 2
    assert restorer.rows(None).offset.tolist() == [0, 1, 2]
    # Offset 2 is not committed: it will be read (and taken in) again.
    ids, ts, amounts = restorer.histories(committed_offset=2)
    assert ids == [7] and ts[0].tolist() == [T0, T0 + 1] and amounts[0].tolist() == [1.0, 2.0]
    assert len(restorer.build(committed_offset=0)) == 0


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
    assert pending.expiry_threshold() == T0 + 2 + 8 * DAY_MS
    assert pending.expire(T0 + 8 * DAY_MS) == 0
    assert pending.expire(T0 + 8 * DAY_MS + 10) == 2
    assert len(pending) == 0 and pending.expiry_threshold() is None


def test_pending_decisions_are_taken_many_at_once_across_batches_and_models() -> None:
    pending = PendingDecisions(retention_ms=8 * DAY_MS)
    for first, version in ((1, "v1"), (4, "v2")):
        ids = np.arange(first, first + 3, dtype=np.int64)
        pending.add(
            ids,
            ids * 10,
            T0 + ids,
            ids / 10.0,
            np.array([APPROVE, REVIEW, DECLINE], np.int8),
            "fraud",
            version,
            T0 + 100 + first,
        )
    # 5 and 2 from different batches, 9 unknown, 5 twice (a duplicate label).
    asked = np.array([5, 9, 2, 5, 6], np.int64)
    taken = pending.take_many(asked.tolist())
    assert taken.found.tolist() == [True, False, True, False, True]
    assert taken.card_id.tolist() == [50, 20, 60]
    assert taken.scores.tolist() == [0.5, 0.2, 0.6]
    assert taken.actions.tolist() == [REVIEW, REVIEW, DECLINE]
    assert taken.decided_at.tolist() == [T0 + 104, T0 + 101, T0 + 104]
    assert [taken.models[i] for i in taken.model_index] == [
        ("fraud", "v2"),
        ("fraud", "v1"),
        ("fraud", "v2"),
    ]
    labels = np.array([True, False, False, True, True])
    label_ms = T0 + 7 * DAY_MS + np.arange(5, dtype=np.int64)
    outcomes = OutcomeBatch.join(taken, asked, labels, label_ms)
    assert outcomes.transaction_id.tolist() == [5, 2, 6]
    assert outcomes.is_fraud.tolist() == [True, False, True]
    assert outcomes.label_timestamp.tolist() == (label_ms[[0, 2, 4]]).tolist()
    assert outcomes.timestamp.tolist() == [T0 + 5, T0 + 2, T0 + 6]
    both = OutcomeBatch.concat([outcomes, outcomes])
    assert len(both) == 6
    assert [both.models[i] for i in both.model_index] == [
        ("fraud", "v2"),
        ("fraud", "v1"),
        ("fraud", "v2"),
    ] * 2
    assert len(pending) == 6 - 3


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


def test_window_stats_of_a_mixed_batch_equal_a_per_window_reference() -> None:
    rng = np.random.default_rng(5)
    n, n_features, bins = 500, 3, 5
    ts = T0 + np.sort(rng.integers(0, 4 * HOUR_MS, n)).astype(np.int64)
    scores = rng.random(n)
    scores[:3] = [0.0, 1.0, 0.9999]  # the histogram's edges
    actions = rng.integers(0, 3, n).astype(np.int8)
    features = rng.normal(size=(n, n_features)).astype(np.float32)
    features[::7, 1] = np.nan
    features[::11, 2] = np.inf
    stats = WindowStats(length_ms=HOUR_MS, grace_ms=0, n_features=n_features, bins=bins)
    stats.add(ts, scores, actions, features, 1.0, rng.integers(0, 3, n))
    windows = stats.drain()
    assert [w.start_ms for w in windows] == [T0 + k * HOUR_MS for k in range(4)]
    clean = np.nan_to_num(features.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    for window in windows:
        mine = (ts >= window.start_ms) & (ts < window.start_ms + HOUR_MS)
        assert window.count == mine.sum()
        assert window.actions.tolist() == np.bincount(actions[mine], minlength=3).tolist()
        where = np.clip((scores[mine] * bins).astype(np.int64), 0, bins - 1)
        assert window.histogram.tolist() == np.bincount(where, minlength=bins).tolist()
        np.testing.assert_allclose(window.feature_sum, clean[mine].sum(axis=0), rtol=1e-12)
        np.testing.assert_allclose(window.feature_sq, (clean[mine] ** 2).sum(axis=0), rtol=1e-12)


def test_window_stats_hold_many_windows_and_start_reused_ones_empty() -> None:
    """More windows open than the slab first holds (it grows), emitted ones give
    their rows back, and a window opened in a reused row starts from zero."""
    rng = np.random.default_rng(7)
    stats = WindowStats(length_ms=HOUR_MS, grace_ms=0, n_features=2, bins=4)
    hours = 40
    ts = T0 + rng.permutation(np.arange(hours) * HOUR_MS + 17).astype(np.int64)
    scores = rng.random(hours)
    actions = rng.integers(0, 3, hours).astype(np.int8)
    features = rng.normal(size=(hours, 2)).astype(np.float32)
    stats.add(ts, scores, actions, features, 3.0, np.zeros(hours, np.int64))
    stats.dead_letter(2)  # into the newest open window
    stats.add(  # the same hours again, in a later batch with another latency
        ts, scores, actions, features, 5.0, np.zeros(hours, np.int64)
    )
    windows = stats.drain()
    assert [w.start_ms for w in windows] == [T0 + h * HOUR_MS for h in range(hours)]
    for window in windows:
        (row,) = np.flatnonzero(ts // HOUR_MS * HOUR_MS == window.start_ms)
        assert window.count == 2
        assert window.actions.tolist() == [2 * int(a == actions[row]) for a in range(3)]
        np.testing.assert_allclose(window.feature_sum, 2 * features[row].astype(np.float64))
        assert (window.latency_sum_ms, window.latency_max_ms) == (8.0, 5.0)
        assert window.dead_letters == (2 if window.start_ms == T0 + (hours - 1) * HOUR_MS else 0)
    # every row back on the free list and zeroed: a new window starts empty
    late = np.array([T0 + 3 * HOUR_MS], np.int64)
    stats.add(late, scores[:1], actions[:1], features[:1], 1.0, np.zeros(1, np.int64))
    (again,) = stats.drain()
    assert (again.count, again.dead_letters, again.latency_sum_ms) == (1, 0, 1.0)
    assert again.histogram.sum() == 1
    np.testing.assert_allclose(again.feature_sum, features[0].astype(np.float64))


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


def test_partition_maxima_match_a_mask_per_partition() -> None:
    rng = np.random.default_rng(11)
    for n in (0, 1, 7, 300):
        # runs of one partition, as a consumer returns them, and some shuffled rows
        partition = np.repeat(rng.integers(0, 5, 12), rng.integers(1, 40, 12))[:n]
        if n > 100:
            partition[::13] = rng.integers(0, 9, len(partition[::13]))
        values = rng.integers(-(10**12), 10**12, len(partition))
        keys, best = partition_maxima(partition, values)
        expected_keys = list(dict.fromkeys(partition.tolist()))
        assert keys.tolist() == expected_keys
        assert best.tolist() == [int(values[partition == k].max()) for k in expected_keys]


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _one(stats: WindowStats, ts: int, partition: int) -> None:
    stats.add(
        np.array([ts], np.int64),
        np.array([0.1]),
        np.array([APPROVE], np.int8),
        np.array([[1.0]], np.float32),
        1.0,
        np.array([partition]),
    )


def test_an_assigned_partition_not_yet_read_holds_the_watermark_until_idle() -> None:
    clock = _Clock()
    stats = WindowStats(HOUR_MS, grace_ms=0, n_features=1, bins=2, idle_ms=30_000, clock=clock)
    stats.assign([0, 1])
    _one(stats, T0, 0)
    _one(stats, T0 + 5 * HOUR_MS, 0)
    assert stats.watermark_ms == -1 and stats.due() == []  # partition 1 not read yet
    clock.now += 29.0
    assert stats.due() == []
    clock.now += 2.0  # partition 1 silent for 31 s since its assignment: idle
    assert stats.watermark_ms == T0 + 5 * HOUR_MS
    assert [w.start_ms for w in stats.due()] == [T0]
    _one(stats, T0 + 2 * HOUR_MS, 1)  # it speaks again: it holds the watermark once more
    assert stats.watermark_ms == T0 + 2 * HOUR_MS


def test_every_partition_idle_leaves_the_slowest_mark() -> None:
    clock = _Clock()
    stats = WindowStats(HOUR_MS, grace_ms=0, n_features=1, bins=2, idle_ms=1_000, clock=clock)
    stats.assign([0, 1, 2])
    _one(stats, T0 + 3 * HOUR_MS, 0)
    _one(stats, T0 + 7 * HOUR_MS, 1)
    clock.now += 60.0
    assert stats.watermark_ms == T0 + 3 * HOUR_MS
    stats.forget([0])
    assert stats.watermark_ms == T0 + 7 * HOUR_MS


def test_a_backlog_read_partition_after_partition_emits_each_window_once() -> None:
    """Catching up, a consumer returns one partition's chunk after another: a
    window must not close on the first partition's times and reopen for each
    of the others (the monitor refuses a worker's second record of a window)."""
    clock = _Clock()
    stats = WindowStats(HOUR_MS, grace_ms=0, n_features=1, bins=2, clock=clock)
    partitions, hours = 4, 12
    stats.assign(range(partitions))
    emitted: list[int] = []
    for partition in range(partitions):
        for hour in range(hours):
            _one(stats, T0 + hour * HOUR_MS + 1000 * partition, partition)
            clock.now += 0.01
            emitted += [w.start_ms for w in stats.due()]
    emitted += [w.start_ms for w in stats.drain()]
    assert emitted == [T0 + hour * HOUR_MS for hour in range(hours)]


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


def test_decisions_read_back_after_a_restart_join_like_live_ones() -> None:
    pending = PendingDecisions(retention_ms=8 * DAY_MS)
    records = [
        {
            "transaction_id": i,
            "card_id": 100 + i,
            "timestamp": T0 + i,
            "score": i / 10,
            "action": ("APPROVE", "REVIEW", "DECLINE")[i % 3],
            "model_name": "fraud",
            "model_version": "v1" if i < 3 else "v2",
            "decided_at": T0 + 1000 + i,
        }
        for i in range(5)
    ]
    pending.add_records(records)
    assert len(pending) == 5
    taken = pending.take_many([4, 0, 2])
    assert taken.found.all()
    assert taken.card_id.tolist() == [104, 100, 102]
    assert taken.decided_at.tolist() == [T0 + 1004, T0 + 1000, T0 + 1002]
    assert taken.actions.tolist() == [REVIEW, APPROVE, DECLINE]
    assert [taken.models[i][1] for i in taken.model_index] == ["v2", "v1", "v1"]
    # One batch per model: both leave once labels pass their newest decision.
    assert pending.expire(T0 + 2 + 8 * DAY_MS + 1) == 1  # v1's batch (ids 0-2; 1 left)
    assert pending.expire(T0 + 4 + 8 * DAY_MS + 1) == 1  # v2's batch (id 3 left)


class _FullQueueProducer:
    """Refuses every second produce with BufferError, as librdkafka does when its
    local queue is full; a poll serves the queue."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.polls = 0
        self._refuse = True

    def produce(self, topic: str, value: bytes, key: bytes | None) -> None:
        self._refuse = not self._refuse
        if not self._refuse:
            raise BufferError("Local: Queue full")
        self.sent.append((topic, value, key))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0


def test_produce_many_retries_a_full_queue_without_losing_or_repeating() -> None:
    from pipeline.scorer.worker import ScorerWorker

    worker = ScorerWorker.__new__(ScorerWorker)  # only its producer is used here
    producer = _FullQueueProducer()
    worker._producer = producer  # type: ignore[assignment]
    payloads = [f"v{i}".encode() for i in range(7)]
    keys: list[bytes | None] = [f"k{i}".encode() for i in range(6)] + [None]
    worker._produce_many("decisions", keys, payloads)
    assert producer.sent == [("decisions", p, k) for p, k in zip(payloads, keys, strict=True)]
    assert producer.polls == 7  # one wait per refusal


def test_records_of_partitions_no_longer_owned_are_left_out() -> None:
    from confluent_kafka import Message

    from pipeline.scorer.worker import owned_records

    batch = [Message(topic="t", partition=p, offset=o, value=b"x") for p, o in
             [(0, 10), (1, 20), (0, 11), (2, 30), (1, 21)]]  # fmt: skip
    partitions = np.array([m.partition() for m in batch], np.int64)
    offsets = np.array([m.offset() for m in batch], np.int64)
    kept, kept_partitions, kept_offsets = owned_records(batch, partitions, offsets, {0, 2})
    assert [(m.partition(), m.offset()) for m in kept] == [(0, 10), (0, 11), (2, 30)]
    assert kept_partitions.tolist() == [0, 0, 2] and kept_offsets.tolist() == [10, 11, 30]
    nothing, _, _ = owned_records(batch, partitions, offsets, set())
    assert nothing == []


@pytest.mark.parametrize(
    "arguments",
    [
        {"length_ms": 0, "grace_ms": 0, "n_features": 2},
        {"length_ms": HOUR_MS, "grace_ms": -1, "n_features": 2},
        {"length_ms": HOUR_MS, "grace_ms": 0, "n_features": 2, "bins": 0},
        {"length_ms": HOUR_MS, "grace_ms": 0, "n_features": -1},
    ],
)
def test_window_stats_refuse_shapes_they_cannot_hold(arguments: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        WindowStats(**arguments)
