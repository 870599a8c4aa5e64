"""Online evaluator: per-card state updated batch by batch on the hot path.

Each card keeps the (timestamp, amount) of its transactions within the longest
card window (plus always its latest one, for the time-since-previous feature).
The history lives in one shared pool of per-card segments (see
:class:`CardStateStore`). A batch is one compiled pass over its rows in order
(:func:`_append`): each row is appended to its card's segment, its window
starts are found by bisection inside the segment, sums come from per-segment
prefix sums and maxima from one backward scan over the widest window.
The primitives are the offline
evaluator's (:func:`~pipeline.features.primitives.grouped_card_primitives`), up
to float rounding of the sums. The state of one card serializes to bytes (for a
changelog topic keyed by card) and back, so cards can move between workers.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from pipeline.features.derive import assemble_windows
from pipeline.features.errors import FeatureError
from pipeline.features.primitives import CardPrimitives
from pipeline.features.spec import CARD_HISTORY_MS, CARD_WINDOWS_MS, FEATURES, FeatureSpec
from pipeline.features.terminal import TerminalPrimitives
from pipeline.hashindex import Int64Index
from pipeline.jit import kernel, prefetch

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_MAGIC = b"FCS1"
_HEADER = struct.Struct("<4sI")
_MAGIC_WORD = int.from_bytes(_MAGIC, "little")
#: Smallest segment (one sentinel position + 7 rows).
_MIN_CAPACITY = 8
_MIN_POOL = 1024
#: Bytes per pool position: timestamp, amount, two prefix sums, back link.
_POSITION_BYTES = 40
#: Rows ahead whose memory _append asks for early.
_AHEAD = 6


class CardStateStore:
    """Retained history of every card this worker owns.

    Layout: card id -> slot (a compiled hash index); per slot a segment of a shared pool,
    ``[base, base + capacity)``. Position 0 of a segment is a sentinel (prefix
    sums 0); rows sit at positions ``1 .. end - 1`` in time order, of which
    ``live .. end - 1`` are retained (older ones are dropped lazily: a full
    segment is compacted, or moved to a larger segment when the
    retained rows fill three quarters of it). Per pool position: timestamp,
    amount, the segment's prefix sums of amount and amount squared, and the
    distance back to the previous larger amount (40 bytes). Segment capacities come
    in size classes (8, 16, 24, 32, 48, 64, 96, ...); a freed segment (its card moved
    to a larger one, or was dropped) goes on its class's free list and is reused by
    the next segment of that class before the pool grows, so a pool whose cards
    have settled neither grows nor stops to repack. The pool is repacked only when
    it is full and free segments make up half of it.

    ``reserve``: pool positions to allocate at the first growth. The scorer asks for
    millions: a larger pool is a copy of the whole state, which stalls the batch
    (about 110 ms at 1.2M positions on a 2-core host), whereas a large zeroed
    allocation is mapped lazily by the OS, so memory is committed only as rows
    are written.

    A row whose timestamp is earlier than its card's latest is taken as made at
    that latest time (its windows, gap and stored timestamp use it), so the
    history stays ordered.
    """

    def __init__(self, history_ms: int = CARD_HISTORY_MS, *, reserve: int = 0) -> None:
        if history_ms <= 0:
            raise FeatureError("history_ms must be positive")
        if reserve < 0:
            raise FeatureError("reserve must not be negative")
        self.history_ms = history_ms
        self._reserve_positions = reserve
        self._windows: tuple[int, ...] = CARD_WINDOWS_MS
        searched = list(self._windows)
        if history_ms not in searched:
            searched.append(history_ms)
        self._searched = np.asarray(searched, dtype=np.int64)
        self._searched_windows = tuple(searched)
        self._retain_row = searched.index(history_ms)
        self._slot = Int64Index()  # card id -> slot
        self._free: list[int] = []
        self._slots_used = 0
        self._base = np.zeros(64, np.int64)
        self._cap = np.zeros(64, np.int64)
        self._live = np.zeros(64, np.int64)
        self._end = np.zeros(64, np.int64)
        self._probe = np.zeros(64, np.int64)  # scratch for finding repeated slots
        self._tag = np.full(64, -1, np.int64)  # per slot: the caller's tag (e.g. a partition)
        self._used = 0
        self._free_segments = _FreeSegments()
        self._ts = np.zeros(0, np.int64)
        self._amount = np.zeros(0, np.float64)
        self._sums = np.zeros((0, 2), np.float64)  # prefix sums of amount, amount**2
        # Per position: how far back the previous larger amount of the segment is
        # (pointing below the retained rows when there is none), so a window's
        # maximum is a walk along the chain of earlier maxima, not a scan.
        self._back = np.zeros(0, np.int64)

    # --- queries ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, card_id: object) -> bool:
        return card_id in self._slot

    @property
    def nbytes(self) -> int:
        """Bytes of the state in use (for a memory gauge): the pool up to its last
        segment, free ones included, and the per-slot arrays. A reserved pool's
        untouched tail is not counted: the OS has not committed it."""
        slots = (self._base, self._cap, self._live, self._end, self._tag, self._probe)
        return self._used * _POSITION_BYTES + sum(x.nbytes for x in slots)

    def cards(self) -> Iterator[int]:
        """Card ids held."""
        return iter(self._slot.items()[0].tolist())

    def history(self, card_id: int) -> tuple[I64, F64]:
        """(timestamps ms, amounts) retained for a card (empty if unknown)."""
        slot = self._slot.get(int(card_id), -1)
        if slot < 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        lo = int(self._base[slot] + self._live[slot])
        hi = int(self._base[slot] + self._end[slot])
        return self._ts[lo:hi].copy(), self._amount[lo:hi].copy()

    # --- the hot path ----------------------------------------------------------
    def update(
        self, card_id: I64, ts_ms: I64, amount: F64, tag: I64 | None = None
    ) -> CardPrimitives:
        """Add a batch (in processing order) and return its rows' primitives.

        Rows of one card are taken in batch order, after everything already
        retained for it (the scorer reads a card's events from one partition,
        in order); see the class note for rows that arrive late. ``tag`` (one
        int per row) is remembered per card, the last one winning: see
        :meth:`cards_tagged`.
        """
        count, total, total_sq, max_amount, gap = self._update(card_id, ts_ms, amount, tag)
        return CardPrimitives(
            count={w: count[i] for i, w in enumerate(self._windows)},
            total={w: total[i] for i, w in enumerate(self._windows)},
            total_sq={w: total_sq[i] for i, w in enumerate(self._windows)},
            max_amount={w: max_amount[i] for i, w in enumerate(self._windows)},
            gap_ms=gap,
        )

    def features(
        self,
        card_id: I64,
        ts_ms: I64,
        amount: F64,
        terminal: TerminalPrimitives | None,
        features: tuple[FeatureSpec, ...] = FEATURES,
        *,
        tag: I64 | None = None,
    ) -> F32:
        """Update with a batch and return its float32 feature matrix."""
        stacked = self._update(card_id, ts_ms, amount, tag)
        return assemble_windows(
            np.asarray(ts_ms, np.int64), np.asarray(amount, np.float64),
            self._searched_windows, *stacked, terminal, features,
        )  # fmt: skip

    def _update(
        self, card_id: I64, ts_ms: I64, amount: F64, tag: I64 | None
    ) -> tuple[I64, F64, F64, F64, F64]:
        """:meth:`update`'s work: the primitives stacked (searched windows x rows)."""
        card = np.ascontiguousarray(card_id, dtype=np.int64)
        t = np.ascontiguousarray(ts_ms, dtype=np.int64)
        a = np.ascontiguousarray(amount, dtype=np.float64)
        n = len(card)
        searched = self._searched
        count = np.empty((len(searched), n), np.int64)
        total = np.empty((len(searched), n), np.float64)
        total_sq = np.empty((len(searched), n), np.float64)
        max_amount = np.empty((len(searched), n), np.float64)
        gap = np.empty(n, np.float64)
        if n == 0:
            return count, total, total_sq, max_amount, gap
        slots = self._slot.get_many(card)
        if (slots < 0).any():
            self._admit(card, slots)
        if tag is not None:
            self._tag[slots] = tag
        incoming = _incoming(slots, self._end, self._cap, self._probe)
        if len(incoming):
            self._make_room(incoming[:, 0].copy(), incoming[:, 1].copy())
        _append(
            slots, t, a, searched, self._retain_row,
            self._base, self._live, self._end, self._ts, self._amount, self._sums, self._back,
            count, total, total_sq, max_amount, gap,
        )  # fmt: skip
        return count, total, total_sq, max_amount, gap

    # --- slots and segments ------------------------------------------------------
    def _admit(self, card: I64, slots: I64) -> None:
        """Give the batch's unseen cards a slot and a segment (fills ``slots``)."""
        missing = slots < 0
        new_cards, inverse, counts = np.unique(
            card[missing], return_inverse=True, return_counts=True
        )
        ids = self._new_slots(new_cards, _capacity_for(counts))
        slots[missing] = ids[inverse]

    def _new_slots(self, cards: I64, capacity: I64) -> I64:
        """Slots with empty segments of ``capacity`` for ``cards`` (not yet held)."""
        k = len(cards)
        reuse = min(k, len(self._free))
        taken = [self._free.pop() for _ in range(reuse)]
        fresh = k - reuse
        if self._slots_used + fresh > len(self._base):
            size = max(2 * len(self._base), self._slots_used + fresh, 64)
            for name in ("_base", "_cap", "_live", "_end", "_probe", "_tag"):
                grown = np.full(size, -1 if name == "_tag" else 0, np.int64)
                grown[: self._slots_used] = getattr(self, name)[: self._slots_used]
                setattr(self, name, grown)
        ids = np.concatenate(
            (
                np.asarray(taken, dtype=np.int64),
                np.arange(self._slots_used, self._slots_used + fresh, dtype=np.int64),
            )
        )
        self._slots_used += fresh
        self._base[ids] = self._allocate(capacity)
        self._cap[ids] = capacity
        self._live[ids] = 1
        self._end[ids] = 1
        self._tag[ids] = -1
        self._slot.put_many(cards, ids)
        return ids

    def _allocate(self, capacity: I64) -> I64:
        """Bases of new segments (sentinels zeroed): free segments of the same
        class first, then the end of the pool."""
        bases = self._free_segments.take(capacity)
        fresh = bases < 0
        total = int(capacity[fresh].sum())
        if self._used + total > len(self._ts):
            # Growing or repacking: a repack lays out held segments only and
            # empties the free lists, so give back what was taken and start over.
            taken = ~fresh
            self._free_segments.release(bases[taken], capacity[taken])
            self._reserve(int(capacity.sum()))
            bases = self._free_segments.take(capacity)
            fresh = bases < 0
            total = int(capacity[fresh].sum())
        wanted = capacity[fresh]
        bases[fresh] = self._used + np.cumsum(wanted) - wanted
        self._used += total
        self._sums[bases] = 0.0
        return bases

    def _reserve(self, extra: int) -> None:
        """Make room for ``extra`` positions at the end of the pool."""
        size = len(self._ts)
        if self._used + extra <= size:
            return
        if self._free_segments.positions * 2 > self._used:
            self._repack()
            if self._used + extra <= size:
                return
        size = max(
            size + size // 2, (self._used + extra) * 5 // 4, _MIN_POOL, self._reserve_positions
        )
        used = self._used
        ts = np.zeros(size, np.int64)
        ts[:used] = self._ts[:used]
        amount = np.zeros(size, np.float64)
        amount[:used] = self._amount[:used]
        sums = np.zeros((size, 2), np.float64)
        sums[:used] = self._sums[:used]
        back = np.zeros(size, np.int64)
        back[:used] = self._back[:used]
        self._ts, self._amount, self._sums, self._back = ts, amount, sums, back

    def _make_room(self, slots: I64, incoming: I64) -> None:
        """Compact (or move to a larger segment) slots about to overflow."""
        required = 1 + self._end[slots] - self._live[slots] + incoming
        fits = 4 * required <= 3 * self._cap[slots]
        if fits.any():
            compact = slots[fits]
            _move_own(compact, self._base[compact], *self._layout())
        grow = slots[~fits]
        if len(grow):
            capacity = _capacity_for(required[~fits] - 1)
            bases = self._allocate(capacity)  # may repack: the old segments are still held
            old_bases, old_capacity = self._base[grow], self._cap[grow]
            self._cap[grow] = capacity
            _move_own(grow, bases, *self._layout())
            self._free_segments.release(old_bases, old_capacity)

    def _layout(self) -> tuple[I64, I64, I64, I64, F64, F64, I64]:
        return self._base, self._live, self._end, self._ts, self._amount, self._sums, self._back

    def _move(self, slots: I64, bases: I64) -> None:
        """Copy slots' retained rows to positions 1.. of segments at ``bases``.

        Every source row is read before any is written, so segments may be laid out
        again in any order (a repack); :func:`_move_own` is the faster one-segment-at-a-time
        copy for moves within a segment or to free space.
        """
        old_base = self._base[slots]
        start = old_base + self._live[slots]
        length = self._end[slots] - self._live[slots]
        owner, offset = _ramp(length)
        src = start[owner] + offset
        dst = (bases + 1)[owner] + offset
        ts = self._ts[src]
        sums = self._sums[src] - self._sums[start - 1][owner]
        amount = self._amount[src]
        back = self._back[src]
        self._ts[dst] = ts
        self._amount[dst] = amount
        self._sums[dst] = sums
        self._back[dst] = back
        self._sums[bases] = 0.0
        self._base[slots] = bases
        self._live[slots] = 1
        self._end[slots] = 1 + length

    def _repack(self) -> None:
        """Lay all held segments out again from the start of the pool."""
        slots = self._slot.items()[1]
        capacity = self._cap[slots]
        bases = np.cumsum(capacity) - capacity
        self._move(slots, bases)
        self._used = int(capacity.sum())
        self._free_segments = _FreeSegments()

    def tag_cards(self, card_ids: Iterable[int], tag: int) -> None:
        """Set the tag of cards held (others are ignored)."""
        slots = self._slot.get_many(_ids(card_ids))
        self._tag[slots[slots >= 0]] = tag

    def cards_tagged(self, tags: Iterable[int]) -> list[int]:
        """Cards held whose last tag is one of ``tags``."""
        cards, slots = self._slot.items()
        wanted = np.fromiter(tags, np.int64)
        result: list[int] = cards[np.isin(self._tag[slots], wanted)].tolist()
        return result

    def drop_card(self, card_id: int) -> None:
        """Forget a card (its partition moved to another worker)."""
        self.drop_cards([card_id])

    def drop_cards(self, card_ids: Iterable[int] | I64) -> None:
        """Forget cards (unknown ones are ignored); their segments go on the free lists."""
        slots = self._slot.pop_many(_ids(card_ids))
        slots = slots[slots >= 0]
        self._free_segments.release(self._base[slots], self._cap[slots])
        self._cap[slots] = 0
        self._free.extend(slots.tolist())

    # --- serialization (changelog, rebalancing) ----------------------------------
    def dump_cards(self, card_ids: Iterable[int] | I64) -> list[bytes]:
        """:meth:`dump_card` of many cards at once (one numpy pass, then slicing)."""
        ids = np.asarray(card_ids, dtype=np.int64).reshape(-1).tolist()
        held, seg_lo, seg_hi = self._segments(ids)
        return self._pack(seg_lo, np.where(held, seg_hi - seg_lo, 0), _MAGIC_WORD)

    def _segments(self, card_ids: Sequence[int]) -> tuple[npt.NDArray[np.bool_], I64, I64]:
        """Per card: held at all, and the [lo, hi) of its live rows in the pool."""
        slots = self._slot.get_many(np.asarray(card_ids, np.int64))
        held = slots >= 0
        slot = np.where(held, slots, 0)
        return held, self._base[slot] + self._live[slot], self._base[slot] + self._end[slot]

    def _pack(self, first: I64, length: I64, magic_word: int) -> list[bytes]:
        """Blobs of pool rows ``first .. first + length``: header word, timestamps, amounts."""
        words = 1 + 2 * length
        offsets = np.cumsum(words) - words
        out = np.empty(int(words.sum()), dtype="<i8")
        out[offsets] = magic_word + (length << 32)
        src = _runs(first, length)
        out[_runs(offsets + 1, length)] = self._ts[src]
        out[_runs(offsets + 1 + length, length)] = self._amount[src].view(np.int64)
        raw = out.tobytes()
        cuts = (offsets * 8).tolist()
        cuts.append(len(raw))
        return [raw[lo:hi] for lo, hi in itertools.pairwise(cuts)]

    def dump_card(self, card_id: int) -> bytes:
        """One card's state as bytes (little-endian; versioned header)."""
        return self.dump_cards([card_id])[0]

    def load_cards(self, card_ids: Sequence[int], blobs: Sequence[bytes]) -> None:
        """Restore many cards from :meth:`dump_card` bytes at once."""
        if len(card_ids) != len(blobs):
            raise FeatureError("card ids and states differ in number")
        lengths = []
        for data in blobs:
            if len(data) < _HEADER.size:
                raise FeatureError("card state too short")
            magic, count = _HEADER.unpack_from(data)
            if magic != _MAGIC or len(data) != _HEADER.size + 16 * count:
                raise FeatureError("card state is corrupt or of an unknown version")
            lengths.append(count)
        length = np.asarray(lengths, dtype=np.int64)
        body = np.frombuffer(b"".join(blobs), dtype="<i8").astype(np.int64)
        words = 1 + 2 * length
        offsets = np.cumsum(words) - words
        owner, offset = _ramp(length)
        head = offsets[owner] + 1 + offset
        ts = body[head]
        amount = body[head + length[owner]].view(np.float64)
        self._put(np.asarray(card_ids, dtype=np.int64), length, ts, amount)

    def load_card(self, card_id: int, data: bytes) -> None:
        """Restore one card's state from :meth:`dump_card` bytes."""
        self.load_cards([card_id], [data])

    def to_dict(self, card_id: int) -> dict[str, list[float] | list[int]]:
        """One card's state as a JSON-safe dict."""
        ts, amount = self.history(card_id)
        return {"ts_ms": ts.tolist(), "amount": amount.tolist()}

    def load_dict(self, card_id: int, data: dict[str, list[float] | list[int]]) -> None:
        """Restore one card's state from :meth:`to_dict` output."""
        try:
            ts = np.asarray(data["ts_ms"], dtype=np.int64).reshape(-1)
            amount = np.asarray(data["amount"], dtype=np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureError(f"bad card state: {exc}") from exc
        if len(ts) != len(amount):
            raise FeatureError("bad card state: ts_ms and amount differ in length")
        self._put(np.array([int(card_id)]), np.array([len(ts)]), ts, amount)

    def load_histories(
        self,
        card_ids: Sequence[int],
        ts_ms: Sequence[npt.ArrayLike],
        amounts: Sequence[npt.ArrayLike],
    ) -> None:
        """:meth:`load_dict` of many cards at once, from per-card arrays (for restores)."""
        if not len(card_ids) == len(ts_ms) == len(amounts):
            raise FeatureError("card ids, timestamps and amounts differ in number")
        ts = [np.asarray(x, dtype=np.int64).reshape(-1) for x in ts_ms]
        amount = [np.asarray(x, dtype=np.float64).reshape(-1) for x in amounts]
        length = np.fromiter(map(len, ts), np.int64, len(ts))
        if not np.array_equal(length, np.fromiter(map(len, amount), np.int64, len(amount))):
            raise FeatureError("bad card state: ts_ms and amount differ in length")
        if not len(ts):
            return
        self._put(
            np.asarray(card_ids, dtype=np.int64), length, np.concatenate(ts), np.concatenate(amount)
        )

    def _put(self, cards: I64, length: I64, ts: I64, amount: F64) -> None:
        """Replace cards' state with the given rows (concatenated, per card in time order)."""
        owner, offset = _ramp(length)
        if len(ts) > 1:
            same = owner[1:] == owner[:-1]
            if (same & (ts[1:] < ts[:-1])).any():
                raise FeatureError("bad card state: timestamps are not in order")
        if len(np.unique(cards)) != len(cards):
            raise FeatureError("bad card state: a card is given twice")
        self.drop_cards(cards)
        kept = np.flatnonzero(length > 0)
        ids = self._new_slots(cards[kept], _capacity_for(length[kept]))
        bases = np.zeros(len(cards), np.int64)
        bases[kept] = self._base[ids]
        dst = (bases + 1)[owner] + offset
        self._ts[dst] = ts
        self._end[ids] = 1 + length[kept]
        values = np.column_stack((amount, amount * amount))
        run = np.cumsum(values, axis=0)
        first = (np.cumsum(length) - length)[kept]
        before = np.zeros((len(cards), 2))
        before[kept] = (run - values)[first]
        self._sums[dst] = run - before[owner]
        self._amount[dst] = amount
        _link(self._base[ids], length[kept], self._amount, self._back)


def warm_up() -> None:
    """Compile (or load from numba's cache) the hot-path kernels, so no batch pays for it."""
    store = CardStateStore()
    for _ in range(2):  # the second call moves a segment
        store.update(np.arange(3, dtype=np.int64), np.arange(3, dtype=np.int64), np.ones(3))
    store.update(np.zeros(12, np.int64), np.arange(12, dtype=np.int64), np.ones(12))


@kernel
def _incoming(slots: I64, end: I64, cap: I64, scratch: I64) -> I64:  # pragma: no cover - compiled
    """(slot, rows arriving) for every slot whose segment the batch would overflow.

    ``scratch`` (one entry per slot, all zero) counts the batch's rows per slot and is left
    zeroed again.
    """
    n = len(slots)
    for i in range(n):
        scratch[slots[i]] += 1
    over = np.empty((n, 2), np.int64)
    k = 0
    for i in range(n):
        s = slots[i]
        c = scratch[s]
        if c > 0:
            if end[s] + c > cap[s]:
                over[k, 0] = s
                over[k, 1] = c
                k += 1
            scratch[s] = 0
    return over[:k]


@kernel
def _move_own(  # pragma: no cover - compiled
    slots: I64,
    bases: I64,
    base: I64,
    live: I64,
    end: I64,
    ts: I64,
    amount: F64,
    sums: F64,
    back: I64,
) -> None:
    """:meth:`CardStateStore._move` for targets that are each slot's own segment (copied
    forward, so the rows move down) or space no other slot uses."""
    for j in range(len(slots)):
        s = slots[j]
        start = base[s] + live[s]
        length = end[s] - live[s]
        to = bases[j] + 1
        offset0 = sums[start - 1, 0]
        offset1 = sums[start - 1, 1]
        for k in range(length):
            ts[to + k] = ts[start + k]
            amount[to + k] = amount[start + k]
            sums[to + k, 0] = sums[start + k, 0] - offset0
            sums[to + k, 1] = sums[start + k, 1] - offset1
            back[to + k] = back[start + k]
        sums[bases[j], 0] = 0.0
        sums[bases[j], 1] = 0.0
        base[s] = bases[j]
        live[s] = 1
        end[s] = 1 + length


@kernel
def _append(  # pragma: no cover - compiled
    slots: I64,
    t: I64,
    amount: F64,
    searched: I64,
    retain_row: int,
    base: I64,
    live: I64,
    end: I64,
    ts_pool: I64,
    amount_pool: F64,
    sums_pool: F64,
    back_pool: I64,
    count: I64,
    total: F64,
    total_sq: F64,
    max_amount: F64,
    gap: F64,
) -> None:
    """Append a batch's rows, in order, to their segments and write their primitives.

    Per row: the late-row rule, the amount and its prefix sums, then for every searched
    window the first retained position with ``ts > t - w`` (a bisection inside the
    segment), the count, sums and max over ``[start, row)`` (the row itself excluded), and
    the segment's new first retained position (``retain_row``'s window). Rows of one card
    see the rows before them in the batch. Every segment has room (``_make_room``).
    """
    n_windows = len(searched)
    lower = np.empty(n_windows, np.int64)
    n = len(slots)
    sums_flat = sums_pool.reshape(-1)
    for i in range(n):
        # The rows a few ahead: their card's segment bounds (further ahead), then
        # the lines of its newest rows and of its oldest kept one, which this
        # row's work will not wait for.
        if i + 2 * _AHEAD < n:
            later = slots[i + 2 * _AHEAD]
            prefetch(base, later)
            prefetch(end, later)
            prefetch(live, later)
        if i + _AHEAD < n:
            soon = slots[i + _AHEAD]
            newest = base[soon] + end[soon] - 1
            oldest = base[soon] + live[soon]
            prefetch(ts_pool, newest)
            prefetch(amount_pool, newest)
            prefetch(back_pool, newest)
            prefetch(sums_flat, 2 * newest)
            prefetch(ts_pool, oldest)
            prefetch(sums_flat, 2 * oldest - 2)
            middle = (oldest + newest) >> 1
            prefetch(ts_pool, middle)
            week = (middle + newest) >> 1  # about where a week's window starts
            prefetch(ts_pool, week)
            prefetch(sums_flat, 2 * week)
            prefetch(sums_flat, max(2 * newest - 8, 0))
            prefetch(amount_pool, week)
            prefetch(back_pool, week)
        s = slots[i]
        b = base[s]
        lo = b + live[s]
        at = b + end[s]
        ti = t[i]
        has_prev = at > lo
        if has_prev:
            prev = ts_pool[at - 1]
            if ti < prev:  # a late row takes its card's latest time
                ti = prev
            gap[i] = float(ti - prev)
        else:
            gap[i] = np.nan
        a = amount[i]
        ts_pool[at] = ti
        amount_pool[at] = a
        sums_pool[at, 0] = sums_pool[at - 1, 0] + a
        sums_pool[at, 1] = sums_pool[at - 1, 1] + a * a
        end[s] += 1
        for k in range(n_windows):
            threshold = ti - searched[k]
            left, right = lo, at  # first position in [left, right) with ts > threshold
            while left < right:
                mid = (left + right) >> 1
                if ts_pool[mid] <= threshold:
                    left = mid + 1
                else:
                    right = mid
            lower[k] = left
            count[k, i] = at - left
            total[k, i] = sums_pool[at - 1, 0] - sums_pool[left - 1, 0]
            total_sq[k, i] = sums_pool[at - 1, 1] - sums_pool[left - 1, 1]
        # Maxima: walk back along the previous-larger chain from the newest row;
        # the last position still inside a window holds that window's largest.
        for k in range(n_windows):
            if lower[k] >= at:
                max_amount[k, i] = np.nan
                continue
            pos = at - 1
            while True:
                step = pos - back_pool[pos]
                if step < lower[k]:
                    break
                pos = step
            max_amount[k, i] = amount_pool[pos]
        # This row's link: the nearest earlier larger amount of the segment.
        pos = at - 1
        while pos >= lo and amount_pool[pos] <= a:
            pos -= back_pool[pos]
        back_pool[at] = at - pos
        live[s] = lower[retain_row] - b


@kernel
def _link(bases: I64, lengths: I64, amount: F64, back: I64) -> None:  # pragma: no cover
    """The previous-larger links of segments written whole (rows at ``base + 1 ..``)."""
    for j in range(len(bases)):
        lo = bases[j] + 1
        for at in range(lo, lo + lengths[j]):
            pos = at - 1
            while pos >= lo and amount[pos] <= amount[at]:
                pos -= back[pos]
            back[at] = at - pos


def _ids(card_ids: Iterable[int] | I64) -> I64:
    if isinstance(card_ids, np.ndarray):
        return np.ascontiguousarray(card_ids, np.int64).reshape(-1)
    return np.fromiter(card_ids, np.int64)


def _ramp(length: I64) -> tuple[I64, I64]:
    """For ranges of ``length``: each element's range index and offset in it."""
    total = int(length.sum())
    owner = np.repeat(np.arange(len(length), dtype=np.int64), length)
    offset = np.arange(total, dtype=np.int64) - (np.cumsum(length) - length)[owner]
    return owner, offset


def _runs(start: I64, length: I64) -> I64:
    """``start[i] .. start[i] + length[i] - 1`` for every ``i``, back to back.

    A cumsum of steps (1 inside a run, a jump between runs): no per-element
    repeat, so it stays cheap for long runs.
    """
    total = int(length.sum())
    steps = np.ones(total, np.int64)
    some = length > 0
    if total:
        begin, first = start[some], (np.cumsum(length) - length)[some]
        steps[0] = begin[0]
        steps[first[1:]] = begin[1:] - (begin + length[some] - 1)[:-1]
    positions: I64 = np.cumsum(steps, out=steps)
    return positions


#: Segment size classes: 8, then powers of two and one and a half times them.
_CLASSES = np.unique(
    np.concatenate(([_MIN_CAPACITY], 1 << np.arange(3, 48), 3 << np.arange(3, 47))).astype(np.int64)
)


def _capacity_for(rows: I64) -> I64:
    """Segment capacity for ``rows`` rows (+ sentinel): half as much again, rounded up
    to a size class."""
    need = (1 + np.asarray(rows, dtype=np.int64)) * 3 // 2
    capacity: I64 = _CLASSES[np.searchsorted(_CLASSES, need)]
    return capacity


class _FreeSegments:
    """Bases of free segments, one stack per capacity."""

    def __init__(self) -> None:
        self._stacks: dict[int, I64] = {}
        self._counts: dict[int, int] = {}
        self.positions = 0  # pool positions in free segments

    def release(self, bases: I64, capacity: I64) -> None:
        if not len(bases):
            return
        for cap in np.unique(capacity).tolist():
            mine = bases[capacity == cap]
            count = self._counts.get(cap, 0)
            stack = self._stacks.get(cap)
            if stack is None or count + len(mine) > len(stack):
                grown = np.empty(max(2 * (count + len(mine)), 16), np.int64)
                if stack is not None:
                    grown[:count] = stack[:count]
                self._stacks[cap] = stack = grown
            stack[count : count + len(mine)] = mine
            self._counts[cap] = count + len(mine)
        self.positions += int(capacity.sum())

    def take(self, capacity: I64) -> I64:
        """A free base for each requested capacity, or -1 where there is none."""
        bases = np.full(len(capacity), -1, np.int64)
        if not self._counts or not len(capacity):
            return bases
        for cap in np.unique(capacity).tolist():
            count = self._counts.get(cap, 0)
            if not count:
                continue
            want = np.flatnonzero(capacity == cap)
            k = min(len(want), count)
            bases[want[:k]] = self._stacks[cap][count - k : count]
            self._counts[cap] = count - k
            self.positions -= k * cap
        return bases
