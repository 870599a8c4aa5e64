"""The card store's pool: size classes, free-segment reuse, the reserved pool."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_features_online_speed import assert_same, offline

from pipeline.features import CardStateStore
from pipeline.features.online import _capacity_for
from pipeline.features.spec import DAY_MS


def is_power_of_two(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def test_capacities_are_size_classes_with_room_to_grow() -> None:
    rows = np.arange(0, 20_000)
    capacity = _capacity_for(rows)
    for c in np.unique(capacity).tolist():  # 8, 16, 24, 32, 48, 64, 96, ...
        assert c >= 8 and (is_power_of_two(c) or (c % 3 == 0 and is_power_of_two(c // 3))), c
    need = (rows + 1) * 3 // 2
    assert (capacity >= need).all()  # room for half as many rows again
    assert (capacity[need > 16] <= need[need > 16] * 3 // 2).all()  # classes 1.5x apart at most
    assert (np.diff(capacity) >= 0).all()


def test_freed_segments_are_reused_before_the_pool_grows() -> None:
    store = CardStateStore()
    rng = np.random.default_rng(3)
    ts = np.arange(3000, dtype=np.int64) * 1000
    store.update(rng.integers(0, 100, 3000), ts, np.ones(3000))
    held = list(store.cards())
    before = store.nbytes
    for cycle in range(20):  # a partition leaves and comes back, over and over
        cards = held[cycle % 4 :: 4]
        blobs = store.dump_cards(cards)
        store.drop_cards(cards)
        store.load_cards(cards, blobs)
        assert store.dump_cards(cards) == blobs, cycle
        assert store.nbytes == before, cycle


def test_settled_cards_moving_up_reuse_what_others_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Cohorts of cards grow in step: each move to a larger segment frees one that
    # the next cohort's cards take, so once the population has settled the pool
    # neither grows nor stops a batch to repack.
    repacks: list[int] = []
    original = CardStateStore._repack

    def counted(self: CardStateStore) -> None:
        repacks.append(len(self))
        original(self)

    monkeypatch.setattr(CardStateStore, "_repack", counted)
    store = CardStateStore(history_ms=DAY_MS)
    per_cohort, rows = 300, 40
    sizes, repacked = [], []
    for cohort in range(12):
        cards = np.arange(per_cohort) + cohort * per_cohort
        for step in range(rows):
            t = np.full(per_cohort, (cohort * rows + step) * 60_000, np.int64)
            store.update(cards, t, np.ones(per_cohort))
        store.drop_cards(cards[: per_cohort // 2])  # half of them leave now,
        store.drop_cards(cards[per_cohort // 2 :] - per_cohort)  # the rest a cohort later
        sizes.append(store.nbytes)
        repacked.append(len(repacks))
    assert len(set(sizes[2:])) == 1, sizes
    assert len(set(repacked[2:])) == 1, repacked


def test_a_reserved_pool_is_not_copied_while_it_fits() -> None:
    store = CardStateStore(reserve=200_000)
    store.update(np.arange(10), np.zeros(10, np.int64), np.ones(10))
    pool = store._ts
    rng = np.random.default_rng(0)
    for i in range(50):
        n = 1000
        store.update(rng.integers(0, 5000, n), np.full(n, i * 60_000, np.int64), np.ones(n))
    assert store._ts is pool
    assert len(pool) == 200_000
    assert store.nbytes < 200_000 * 40  # the untouched tail is not counted


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cycles=st.integers(1, 6),
    reserve=st.sampled_from([0, 5_000]),
)
def test_drops_and_reloads_between_batches_keep_parity(
    seed: int, cycles: int, reserve: int
) -> None:
    # Segments freed by drops and moves are reused by other cards: none may see
    # another's rows.
    rng = np.random.default_rng(seed)
    n = 1500
    ts = np.sort(rng.integers(0, 60 * DAY_MS, n)) + 1_522_540_800_000
    card = rng.integers(0, 60, n) * 13 + 5
    amount = np.round(rng.gamma(2.0, 30.0, n), 2)
    want = offline(card, ts, amount)
    store = CardStateStore(reserve=reserve)
    cuts = np.linspace(0, n, cycles + 2).astype(int)
    for lo, hi in itertools.pairwise(cuts.tolist()):
        assert_same(
            store.update(card[lo:hi], ts[lo:hi], amount[lo:hi]), want.take(np.arange(lo, hi))
        )
        held = list(store.cards())
        leaving = rng.permutation(held)[: len(held) // 2].tolist()
        blobs = store.dump_cards(leaving)
        store.drop_cards(leaving)
        store.update(  # strangers take the freed segments, then leave
            np.arange(10**9, 10**9 + 40), np.full(40, ts[hi - 1], np.int64), np.ones(40)
        )
        store.drop_cards(range(10**9, 10**9 + 40))
        store.load_cards(leaving, blobs)
