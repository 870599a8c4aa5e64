"""The global table's content: the latest history per terminal, queried as one.

Engine-free; :class:`~pipeline.terminal.table.TerminalTable` feeds it from the
compacted topic. Queries go through one
:class:`~pipeline.features.terminal.TerminalHistory` over all terminals, the
same code the offline evaluator uses, so a terminal's features online equal
the offline ones whenever its history is complete up to the query's window
end. Rebuilding that index costs milliseconds per 10k terminals, so it is
rebuilt lazily: when queried after a change, at most every
``rebuild_interval_s`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from pipeline.features.terminal import TerminalHistory, TerminalPrimitives
from pipeline.terminal.record import HistoryRecord

I64 = npt.NDArray[np.int64]

log = logging.getLogger(__name__)


class HistoryStore:
    """Latest :class:`HistoryRecord` per terminal plus a lazily rebuilt query index."""

    def __init__(
        self,
        label_delay_ms: int,
        rebuild_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label_delay_ms = label_delay_ms
        self.rebuild_interval_s = rebuild_interval_s
        self._clock = clock
        self._records: dict[int, HistoryRecord] = {}
        self._history = TerminalHistory(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        )
        self._changed = False
        self._built_at: float | None = None
        self.as_of_ms: int | None = None
        self.rebuilds = 0
        self.rebuild_seconds = 0.0
        self.delay_mismatches = 0

    def __len__(self) -> int:
        """Terminals held."""
        return len(self._records)

    def __contains__(self, terminal_id: object) -> bool:
        return terminal_id in self._records

    def get(self, terminal_id: int) -> HistoryRecord | None:
        return self._records.get(int(terminal_id))

    def apply(self, record: HistoryRecord) -> None:
        """Replace a terminal's history (the latest message wins, as in the compacted topic)."""
        if record.label_delay_ms != self.label_delay_ms:
            if not self.delay_mismatches:
                log.warning(
                    "terminal history matured with a %d ms label delay, this table uses %d ms; "
                    "features will not match the offline ones",
                    record.label_delay_ms,
                    self.label_delay_ms,
                )
            self.delay_mismatches += 1
        self._records[record.terminal_id] = record
        if self.as_of_ms is None or record.as_of_ms > self.as_of_ms:
            self.as_of_ms = record.as_of_ms
        self._changed = True

    def remove(self, terminal_id: int) -> None:
        """Forget a terminal (a tombstone)."""
        if self._records.pop(int(terminal_id), None) is not None:
            self._changed = True

    def history(self, *, force: bool = False) -> TerminalHistory:
        """The query index, rebuilt if it changed and the interval has passed (or ``force``)."""
        if self._changed:
            now = self._clock()
            due = self._built_at is None or now - self._built_at >= self.rebuild_interval_s
            if force or due:
                self._rebuild(now)
        return self._history

    def primitives(self, terminal_id: I64, ts_ms: I64) -> TerminalPrimitives:
        """Terminal primitives of each (terminal, time); unknown terminals get zero counts."""
        return self.history().primitives(
            np.asarray(terminal_id, np.int64), np.asarray(ts_ms, np.int64), self.label_delay_ms
        )

    def _rebuild(self, now: float) -> None:
        started = time.perf_counter()
        # Ordered by terminal (each history is ascending in time): the index's own sort
        # then has nothing to do.
        records = [self._records[t] for t in sorted(self._records)]
        if records:
            lengths = np.fromiter((len(r) for r in records), np.int64, len(records))
            terminals = np.fromiter((r.terminal_id for r in records), np.int64, len(records))
            ts_ms = np.concatenate([r.ts_ms for r in records])
            fraud = np.concatenate([r.is_fraud for r in records]).astype(np.int64)
            self._history = TerminalHistory(np.repeat(terminals, lengths), ts_ms, fraud)
        else:
            empty = np.zeros(0, np.int64)
            self._history = TerminalHistory(empty, empty, empty)
        self._changed = False
        self._built_at = now
        self.rebuilds += 1
        self.rebuild_seconds = time.perf_counter() - started
