"""Online card state: parity through compaction/growth/moves, late rows, batch serde, cost."""

from __future__ import annotations

import itertools
import struct
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.features import CardStateStore, FeatureError
from pipeline.features.primitives import CardPrimitives, grouped_card_primitives
from pipeline.features.spec import CARD_HISTORY_MS, CARD_WINDOWS_MS, DAY_MS, HOUR_MS


def stream(seed: int, n: int, cards: int, days: float) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, int(days * DAY_MS), n)) + 1_522_540_800_000
    ts[n // 3 : n // 3 + 5] = ts[n // 3]  # ties
    card = rng.integers(0, cards, n) * 7919 + 11  # sparse ids
    amount = np.round(rng.gamma(2.0, 30.0, n), 2)
    return card, ts, amount


def offline(card: np.ndarray, ts: np.ndarray, amount: np.ndarray) -> CardPrimitives:
    """Primitives of every row, in row order, from the offline evaluator."""
    order = np.argsort(card, kind="stable")
    prims = grouped_card_primitives(card[order], ts[order], amount[order])
    back = np.empty(len(card), np.int64)
    back[order] = np.arange(len(card))
    return prims.take(back)


def online(store: CardStateStore, card, ts, amount, cuts) -> CardPrimitives:  # type: ignore[no-untyped-def]
    parts = []
    bounds = [0, *sorted(set(cuts)), len(card)]
    for lo, hi in itertools.pairwise(bounds):
        if hi > lo:
            parts.append(store.update(card[lo:hi], ts[lo:hi], amount[lo:hi]))
    return CardPrimitives(
        {w: np.concatenate([p.count[w] for p in parts]) for w in CARD_WINDOWS_MS},
        {w: np.concatenate([p.total[w] for p in parts]) for w in CARD_WINDOWS_MS},
        {w: np.concatenate([p.total_sq[w] for p in parts]) for w in CARD_WINDOWS_MS},
        {w: np.concatenate([p.max_amount[w] for p in parts]) for w in CARD_WINDOWS_MS},
        np.concatenate([p.gap_ms for p in parts]),
    )


def assert_same(got: CardPrimitives, want: CardPrimitives) -> None:
    for w in CARD_WINDOWS_MS:
        np.testing.assert_array_equal(got.count[w], want.count[w], err_msg=f"count {w}")
        np.testing.assert_allclose(got.total[w], want.total[w], rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(got.total_sq[w], want.total_sq[w], rtol=1e-9, atol=1e-4)
        np.testing.assert_array_equal(got.max_amount[w], want.max_amount[w], err_msg=f"max {w}")
    np.testing.assert_array_equal(got.gap_ms, want.gap_ms)


def retained(card: np.ndarray, ts: np.ndarray, amount: np.ndarray, c: int) -> tuple:  # type: ignore[type-arg]
    """What the store must hold for card ``c``: rows within the history of its latest."""
    mine = card == c
    t, a = ts[mine], amount[mine]
    keep = t > t[-1] - CARD_HISTORY_MS
    keep[-1] = True
    return t[keep], a[keep]


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 400),
    cards=st.integers(1, 12),
    days=st.sampled_from([0.05, 3.0, 90.0, 400.0]),
    cuts=st.lists(st.integers(0, 400), max_size=12),
)
def test_long_streams_match_offline(
    seed: int, n: int, cards: int, days: float, cuts: list[int]
) -> None:
    # Long spans force compaction and moves to larger segments; short ones, repeats in a batch.
    card, ts, amount = stream(seed, n, cards, days)
    store = CardStateStore()
    assert_same(
        online(store, card, ts, amount, [c for c in cuts if c < n]), offline(card, ts, amount)
    )
    for c in np.unique(card).tolist():
        want_ts, want_amount = retained(card, ts, amount, c)
        got_ts, got_amount = store.history(c)
        np.testing.assert_array_equal(got_ts, want_ts)
        np.testing.assert_array_equal(got_amount, want_amount)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 300),
    days=st.sampled_from([0.5, 40.0, 200.0]),
    restore_at=st.integers(1, 299),
)
def test_window_maxima_with_many_equal_amounts_and_a_restore(
    seed: int, n: int, days: float, restore_at: int
) -> None:
    # Maxima follow a chain of earlier larger amounts: equal amounts, windows that
    # empty out, and a store rebuilt from bytes mid-stream must all give the scan's answer.
    card, ts, _ = stream(seed, n, 4, days)
    amount = np.random.default_rng(seed).integers(1, 4, n).astype(np.float64)
    cut = min(restore_at, n - 1)
    first = CardStateStore()
    head = online(first, card[:cut], ts[:cut], amount[:cut], [cut // 2])
    held = list(first.cards())
    restored = CardStateStore()
    restored.load_cards(held, first.dump_cards(held))
    tail = online(restored, card[cut:], ts[cut:], amount[cut:], [(n - cut) // 3])
    want = offline(card, ts, amount)
    assert_same(head, want.take(np.arange(cut)))
    assert_same(tail, want.take(np.arange(cut, n)))


def test_cards_moved_dropped_and_new_keep_parity() -> None:
    card, ts, amount = stream(4, 6000, 300, 120.0)
    store = CardStateStore()
    expected = offline(card, ts, amount)
    for lo in range(0, 3000, 250):
        store.update(card[lo : lo + 250], ts[lo : lo + 250], amount[lo : lo + 250])
    held = list(store.cards())
    moved = CardStateStore()
    moved.load_cards(held, store.dump_cards(held))
    for c in held[::2]:  # churn: drop half (their segments are reused)
        store.drop_card(c)
    store.load_cards(held[::2], moved.dump_cards(held[::2]))
    for target in (store, moved):
        got = online(target, card[3000:], ts[3000:], amount[3000:], list(range(0, 3000, 333)))
        assert_same(got, expected.take(np.arange(3000, 6000)))
    assert store.dump_cards(held) == moved.dump_cards(held)


def test_late_row_is_taken_at_the_cards_latest_time() -> None:
    store = CardStateStore()
    store.update(np.array([1, 1]), np.array([10 * HOUR_MS, 12 * HOUR_MS]), np.array([5.0, 7.0]))
    late = store.update(
        np.array([1, 1]), np.array([11 * HOUR_MS, 9 * HOUR_MS]), np.array([1.0, 2.0])
    )
    reference = CardStateStore()
    reference.update(np.array([1, 1]), np.array([10 * HOUR_MS, 12 * HOUR_MS]), np.array([5.0, 7.0]))
    same_time = reference.update(
        np.array([1, 1]), np.array([12 * HOUR_MS, 12 * HOUR_MS]), np.array([1.0, 2.0])
    )
    assert_same(late, same_time)
    assert late.gap_ms.tolist() == [0.0, 0.0]
    assert late.count[HOUR_MS].tolist() == [1, 2]
    assert store.history(1)[0].tolist() == [10 * HOUR_MS, 12 * HOUR_MS, 12 * HOUR_MS, 12 * HOUR_MS]
    nxt = store.update(np.array([1]), np.array([12 * HOUR_MS + 60_000]), np.array([3.0]))
    assert nxt.count[HOUR_MS].tolist() == [3] and nxt.gap_ms.tolist() == [60_000.0]


def test_dump_format_and_batch_dump() -> None:
    store = CardStateStore()
    store.update(np.array([5, 6, 5]), np.array([1_000, 2_000, 3_000]), np.array([1.5, 2.5, 3.5]))
    blob = store.dump_card(5)
    expected = struct.pack("<4sI", b"FCS1", 2) + struct.pack("<2q", 1_000, 3_000)
    assert blob == expected + struct.pack("<2d", 1.5, 3.5)
    assert store.dump_cards([5, 99, 6]) == [blob, store.dump_card(99), store.dump_card(6)]
    assert store.dump_card(99) == struct.pack("<4sI", b"FCS1", 0)
    assert store.dump_cards([]) == []
    other = CardStateStore()
    other.load_cards([5, 6], store.dump_cards(np.array([5, 6])))
    assert other.to_dict(5) == {"ts_ms": [1_000, 3_000], "amount": [1.5, 3.5]}
    other.load_card(5, store.dump_card(99))  # empty state forgets the card
    assert 5 not in other and len(other) == 1
    with pytest.raises(FeatureError):
        other.load_cards([1, 2], [blob])
    with pytest.raises(FeatureError):
        other.load_dict(1, {"ts_ms": [3, 1], "amount": [1.0, 2.0]})
    with pytest.raises(FeatureError):
        other.load_card(1, blob[:-1])


def test_shorter_history_hides_older_rows() -> None:
    store = CardStateStore(history_ms=DAY_MS)
    store.update(np.array([1, 1]), np.array([0, 2 * DAY_MS]), np.array([50.0, 1.0]))
    assert store.history(1)[0].tolist() == [2 * DAY_MS]
    prims = store.update(np.array([1]), np.array([3 * DAY_MS - 1]), np.array([1.0]))
    assert prims.count[30 * DAY_MS].tolist() == [1]
    assert prims.max_amount[30 * DAY_MS].tolist() == [1.0]


def _best_of(runs: int, store_batches: list[tuple[np.ndarray, ...]]) -> float:
    best = float("inf")
    for _ in range(runs):
        store = CardStateStore()
        start = time.perf_counter()
        for batch in store_batches:
            store.update(*batch)
        best = min(best, time.perf_counter() - start)
    return best


def test_cost_does_not_grow_with_distinct_cards_per_batch() -> None:
    # A per-card Python loop would make 2000 distinct cards ~50x dearer than 40.
    rng = np.random.default_rng(0)
    batches = 30
    ts = [np.arange(2000) + i * 2000 for i in range(batches)]
    amount = rng.gamma(2.0, 30.0, 2000)
    many = [(rng.permutation(2000), t, amount) for t in ts]
    few = [(rng.integers(0, 40, 2000), t, amount) for t in ts]
    assert _best_of(3, many) < 3 * _best_of(3, few)


def test_churn_reclaims_space_and_keeps_state() -> None:
    rng = np.random.default_rng(1)
    store = CardStateStore()
    sizes = []
    for cycle in range(30):
        cards = np.arange(200) + 1000 * cycle
        ts = np.sort(rng.integers(0, DAY_MS, 600)) + cycle * DAY_MS
        card = rng.permutation(np.tile(cards, 3))
        store.update(card, ts, np.ones(600))
        blobs = store.dump_cards(cards[:20])
        for c in cards.tolist():  # the partition moves away, a few cards come back
            store.drop_card(c)
        store.load_cards(cards[:20].tolist(), blobs)
        assert store.dump_cards(cards[:20]) == blobs
        sizes.append(store.nbytes)
    assert len(store) == 30 * 20
    assert max(sizes[10:]) <= 2 * sizes[10]


def test_load_histories_matches_load_dict() -> None:
    card, ts, amount = stream(9, 500, 40, 20.0)
    source = CardStateStore()
    source.update(card, ts, amount)
    held = list(source.cards())
    one, many = CardStateStore(), CardStateStore()
    for c in held:
        one.load_dict(c, source.to_dict(c))
    many.load_histories(
        held, [source.history(c)[0] for c in held], [source.history(c)[1] for c in held]
    )
    assert many.dump_cards(held) == one.dump_cards(held) == source.dump_cards(held)
    many.load_histories([], [], [])
    with pytest.raises(FeatureError):
        many.load_histories([1], [[1, 2]], [[1.0]])
