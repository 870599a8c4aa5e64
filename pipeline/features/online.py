"""Online evaluator: per-card state updated batch by batch on the hot path.

Each card keeps the (timestamp, amount) of its transactions within the longest
card window (plus always its latest one, for the time-since-previous feature).
A batch update gathers "retained history + new rows" for the batch's cards and
runs the same vectorized primitives as the offline evaluator over them, so the
two agree by construction. The state of one card serializes to bytes (for a
changelog topic keyed by card) and back, so cards can move between workers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from pipeline.features.derive import assemble
from pipeline.features.errors import FeatureError
from pipeline.features.primitives import CardPrimitives, grouped_card_primitives
from pipeline.features.spec import CARD_HISTORY_MS, FEATURES, FeatureSpec
from pipeline.features.terminal import TerminalPrimitives

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_MAGIC = b"FCS1"
_HEADER = struct.Struct("<4sI")


class CardStateStore:
    """Retained history of every card this worker owns.

    A card's state is one (k, 2) float64 array of (timestamp ms, amount) rows;
    millisecond timestamps are exact in float64 until the year 287396.
    """

    def __init__(self, history_ms: int = CARD_HISTORY_MS) -> None:
        self.history_ms = history_ms
        self._state: dict[int, F64] = {}

    def __len__(self) -> int:
        return len(self._state)

    def __contains__(self, card_id: object) -> bool:
        return card_id in self._state

    def cards(self) -> Iterator[int]:
        """Card ids held."""
        return iter(self._state)

    def history(self, card_id: int) -> tuple[I64, F64]:
        """(timestamps ms, amounts) retained for a card (empty if unknown)."""
        held = self._state.get(int(card_id))
        if held is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        return held[:, 0].astype(np.int64), held[:, 1].copy()

    def update(self, card_id: I64, ts_ms: I64, amount: F64) -> CardPrimitives:
        """Add a batch (in processing order) and return its rows' primitives.

        Rows of one card must come in non-decreasing timestamp order, after
        everything already retained for it (the scorer reads a card's events from
        one partition, in order).
        """
        card_id = np.asarray(card_id, dtype=np.int64)
        n = len(card_id)
        order = np.argsort(card_id, kind="stable")
        s_card = card_id[order]
        rows = np.empty((n, 2), dtype=np.float64)
        rows[:, 0] = np.asarray(ts_ms, dtype=np.int64)[order]
        rows[:, 1] = np.asarray(amount, dtype=np.float64)[order]
        starts = np.flatnonzero(np.concatenate(([True], s_card[1:] != s_card[:-1])))
        ends = np.append(starts[1:], n)
        cards = s_card[starts].tolist()
        parts: list[F64] = []
        lengths: list[int] = []
        get, push, count = self._state.get, parts.append, lengths.append
        for card, lo, hi in zip(cards, starts.tolist(), ends.tolist(), strict=True):
            held = get(card)
            if held is None:
                count(0)
            else:
                push(held)
                count(len(held))
            push(rows[lo:hi])
            count(hi - lo)
        merged = np.concatenate(parts)
        all_ts = merged[:, 0].astype(np.int64)
        all_amount = merged[:, 1]
        seg = np.asarray(lengths, dtype=np.int64)
        group = np.repeat(np.repeat(np.arange(len(cards)), 2), seg)
        is_new = np.repeat(np.tile(np.array([False, True]), len(cards)), seg)
        prims = grouped_card_primitives(group, all_ts, all_amount, rows=np.flatnonzero(is_new))
        back = np.empty(n, dtype=np.int64)
        back[order] = np.arange(n)
        result = prims.take(back)
        self._retain(cards, group, all_ts, merged)
        return result

    def _retain(self, cards: list[int], group: I64, ts: I64, merged: F64) -> None:
        last = np.append(group[1:] != group[:-1], True)
        newest = ts[last][group]
        keep = (ts > newest - self.history_ms) | last
        kept = merged[keep]
        kept_group = group[keep]
        cuts = np.flatnonzero(np.append(True, kept_group[1:] != kept_group[:-1])).tolist()
        cuts.append(len(kept))
        state = self._state
        for i, card in enumerate(cards):
            state[card] = kept[cuts[i] : cuts[i + 1]].copy()

    def features(
        self,
        card_id: I64,
        ts_ms: I64,
        amount: F64,
        terminal: TerminalPrimitives | None,
        features: tuple[FeatureSpec, ...] = FEATURES,
    ) -> F32:
        """Update with a batch and return its float32 feature matrix."""
        prims = self.update(card_id, ts_ms, amount)
        return assemble(
            np.asarray(ts_ms, np.int64), np.asarray(amount, np.float64), prims, terminal, features
        )

    # --- serialization (changelog, rebalancing) ------------------------------
    def dump_card(self, card_id: int) -> bytes:
        """One card's state as bytes (little-endian; versioned header)."""
        ts, amount = self.history(card_id)
        return (
            _HEADER.pack(_MAGIC, len(ts))
            + ts.astype("<i8").tobytes()
            + amount.astype("<f8").tobytes()
        )

    def load_card(self, card_id: int, data: bytes) -> None:
        """Restore one card's state from :meth:`dump_card` bytes."""
        if len(data) < _HEADER.size:
            raise FeatureError("card state too short")
        magic, count = _HEADER.unpack_from(data)
        if magic != _MAGIC or len(data) != _HEADER.size + 16 * count:
            raise FeatureError("card state is corrupt or of an unknown version")
        body = memoryview(data)[_HEADER.size :]
        ts = np.frombuffer(body[: 8 * count], dtype="<i8").astype(np.int64)
        amount = np.frombuffer(body[8 * count :], dtype="<f8").astype(np.float64)
        self._put(card_id, ts, amount)

    def _put(self, card_id: int, ts: I64, amount: F64) -> None:
        if len(ts):
            self._state[int(card_id)] = np.column_stack((ts.astype(np.float64), amount))
        else:
            self._state.pop(int(card_id), None)

    def to_dict(self, card_id: int) -> dict[str, list[float] | list[int]]:
        """One card's state as a JSON-safe dict."""
        ts, amount = self.history(card_id)
        return {"ts_ms": ts.tolist(), "amount": amount.tolist()}

    def load_dict(self, card_id: int, data: dict[str, list[float] | list[int]]) -> None:
        """Restore one card's state from :meth:`to_dict` output."""
        try:
            ts = np.asarray(data["ts_ms"], dtype=np.int64)
            amount = np.asarray(data["amount"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureError(f"bad card state: {exc}") from exc
        if len(ts) != len(amount):
            raise FeatureError("bad card state: ts_ms and amount differ in length")
        self._put(card_id, ts, amount)

    def drop_card(self, card_id: int) -> None:
        """Forget a card (its partition moved to another worker)."""
        self._state.pop(int(card_id), None)
