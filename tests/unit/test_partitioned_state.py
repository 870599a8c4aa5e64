"""A worker's card state drops exactly the cards of the partitions it loses."""

from __future__ import annotations

import numpy as np

from pipeline.features import CardStateStore
from pipeline.scorer.state import PartitionedCardState

T0 = 1_522_540_800_000


def _batch(cards: list[int], partitions: list[int], first_ts: int = T0) -> tuple:
    n = len(cards)
    return (
        np.asarray(cards, np.int64),
        first_ts + np.arange(n, dtype=np.int64) * 1000,
        np.full(n, 10.0),
        np.asarray(partitions, np.int64),
    )


def test_drop_forgets_the_cards_of_revoked_partitions_only() -> None:
    state = PartitionedCardState()
    card, ts, amount, partition = _batch([1, 2, 3, 4, 5, 1], [0, 1, 2, 0, 1, 0])
    state.features(card, ts, amount, partition, None)
    assert len(state) == 5
    assert state.drop([0]) == 2  # cards 1 and 4
    assert sorted(state.store.cards()) == [2, 3, 5]
    assert state.drop([1, 2]) == 3
    assert len(state) == 0


def test_a_card_belongs_to_the_partition_it_was_last_read_from() -> None:
    state = PartitionedCardState()
    state.features(*_batch([7, 8], [0, 0])[:3], np.array([0, 0]), None)
    state.features(*_batch([7], [3], first_ts=T0 + 10_000)[:3], np.array([3]), None)
    assert state.drop([0]) == 1
    assert list(state.store.cards()) == [7]
    assert state.drop([3]) == 1


def test_restored_cards_are_dropped_with_their_partition() -> None:
    state = PartitionedCardState()
    state.load(4, [10, 11], [[T0, T0 + 5], [T0]], [[1.0, 2.0], [3.0]])
    state.features(*_batch([12], [5])[:3], np.array([5]), None)
    assert state.partitions == {4}
    assert state.drop([4]) == 2
    assert list(state.store.cards()) == [12]


def test_a_reused_slot_does_not_keep_the_old_cards_tag() -> None:
    store = CardStateStore()
    store.update(np.array([1], np.int64), np.array([T0], np.int64), np.ones(1), np.array([9]))
    store.drop_card(1)
    store.update(np.array([2], np.int64), np.array([T0], np.int64), np.ones(1))
    assert store.cards_tagged([9]) == []
    store.tag_cards([2, 99], 9)  # an unknown card is ignored
    assert store.cards_tagged([9]) == [2]


def test_tags_survive_the_slot_arrays_growing() -> None:
    store = CardStateStore()
    cards = np.arange(500, dtype=np.int64)
    store.update(cards, np.full(500, T0, np.int64), np.ones(500), cards % 3)
    assert sorted(store.cards_tagged([1])) == list(range(1, 500, 3))
