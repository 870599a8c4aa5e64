"""One worker's per-card state, one store for all its partitions.

A single store keeps each batch one vectorized call however many partitions it
spans; the store tags every card with its partition, so the worker can drop
exactly the cards of a revoked partition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pipeline.features import CardStateStore, TerminalPrimitives

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


#: Pool positions the scorer's store allocates at once (40 bytes each; committed
#: by the OS only as rows are written): growing past it copies the whole state.
POOL_RESERVE = 1 << 23


class PartitionedCardState:
    """Card histories of the partitions a worker owns."""

    def __init__(self, reserve: int = POOL_RESERVE) -> None:
        self.store = CardStateStore(reserve=reserve)
        self.partitions: set[int] = set()

    def __len__(self) -> int:
        return len(self.store)

    def features(
        self,
        card_id: I64,
        ts_ms: I64,
        amount: F64,
        partition: I64,
        terminal: TerminalPrimitives | None,
    ) -> npt.NDArray[np.float32]:
        """Update with a batch (any mix of partitions) and return its feature matrix."""
        return self.store.features(card_id, ts_ms, amount, terminal, tag=partition)

    def load(
        self,
        partition: int,
        card_ids: Sequence[int],
        ts_ms: Sequence[npt.ArrayLike],
        amounts: Sequence[npt.ArrayLike],
    ) -> None:
        """Install restored histories of one partition."""
        self.partitions.add(partition)
        if card_ids:
            self.store.load_histories(card_ids, ts_ms, amounts)
            self.store.tag_cards(card_ids, partition)

    def assign(self, partition: int) -> None:
        self.partitions.add(partition)

    def drop(self, partitions: Sequence[int]) -> int:
        """Forget every card of ``partitions``; returns how many."""
        gone = set(partitions)
        self.partitions -= gone
        cards = self.store.cards_tagged(gone)
        self.store.drop_cards(cards)
        return len(cards)
