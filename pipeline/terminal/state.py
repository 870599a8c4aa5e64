"""The terminal-features job's state: transactions per terminal, their labels, maturity.

Engine-free: the Kafka job feeds it decoded batches and publishes what
:meth:`TerminalState.collect` returns. The event-time clock is the largest
transaction timestamp seen; a transaction *matures* once
``timestamp <= clock - label_delay``. A published history holds a terminal's
matured transactions with the fraud flags known so far: a transaction whose
label has not arrived by then counts as genuine, and a label arriving later
still updates it (the terminal is published again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from pipeline.features.spec import DAY_MS, TERMINAL_FRAUD_LOOKBACK_MS, TERMINAL_WINDOWS_MS
from pipeline.terminal.errors import TerminalFeaturesError
from pipeline.terminal.record import HistoryRecord

I64 = npt.NDArray[np.int64]

#: How far back from its window end any terminal feature looks.
FEATURE_SPAN_MS: Final = max(*TERMINAL_WINDOWS_MS, TERMINAL_FRAUD_LOOKBACK_MS)
#: Kept beyond that span, for transactions scored a little behind the job's clock.
RETENTION_SLACK_MS: Final = DAY_MS
#: Matured history kept per terminal, counted back from the maturity bound.
DEFAULT_RETENTION_MS: Final = FEATURE_SPAN_MS + RETENTION_SLACK_MS


class _Log:
    """One terminal's retained transactions, in arrival order."""

    __slots__ = ("fraud", "oldest", "ts", "tx")

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.tx: list[int] = []
        self.fraud: set[int] = set()
        self.oldest = 2**63 - 1


@dataclass(frozen=True)
class Publication:
    """What to publish: fresh histories and terminals to delete (tombstones)."""

    as_of_ms: int
    records: list[HistoryRecord] = field(default_factory=list)
    tombstones: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records) + len(self.tombstones)


@dataclass
class StateCounts:
    """Running totals, for the job's summary."""

    transactions: int = 0
    duplicates: int = 0
    too_old: int = 0
    labels: int = 0
    labels_pending: int = 0
    label_changes: int = 0
    trimmed: int = 0


class TerminalState:
    """Per-terminal transactions within ``label_delay + retention`` of the clock.

    ``retention_ms=None`` keeps everything (a backfill that a replay of all
    history will query).
    """

    def __init__(
        self, label_delay_ms: int, retention_ms: int | None = DEFAULT_RETENTION_MS
    ) -> None:
        if label_delay_ms < 0:
            raise TerminalFeaturesError(f"label delay must be >= 0, got {label_delay_ms} ms")
        if retention_ms is not None and retention_ms < FEATURE_SPAN_MS:
            raise TerminalFeaturesError(
                f"retention {retention_ms} ms is shorter than the features' span "
                f"{FEATURE_SPAN_MS} ms"
            )
        self.label_delay_ms = label_delay_ms
        self.retention_ms = retention_ms
        self.clock_ms: int | None = None
        self.counts = StateCounts()
        self._logs: dict[int, _Log] = {}
        self._terminal_of: dict[int, int] = {}
        self._pending_labels: dict[int, tuple[bool, int]] = {}
        self._unmatured: list[tuple[I64, I64]] = []
        self._dirty: set[int] = set()
        self._removed: set[int] = set()

    # --- queries -----------------------------------------------------------

    def __len__(self) -> int:
        """Terminals held."""
        return len(self._logs)

    @property
    def maturity_bound_ms(self) -> int | None:
        """Transactions at or before this time are matured (``None`` before any input)."""
        return None if self.clock_ms is None else self.clock_ms - self.label_delay_ms

    @property
    def cutoff_ms(self) -> int | None:
        """Transactions at or before this time are dropped (``None``: nothing is)."""
        bound = self.maturity_bound_ms
        if bound is None or self.retention_ms is None:
            return None
        return bound - self.retention_ms

    def transactions_held(self) -> int:
        return len(self._terminal_of)

    # --- input -------------------------------------------------------------

    def add_transactions(self, tx_id: I64, ts_ms: I64, terminal_id: I64) -> None:
        """Add a batch (any order); repeated transaction ids are ignored."""
        if len(ts_ms) == 0:
            return
        latest = int(np.max(ts_ms))
        if self.clock_ms is None or latest > self.clock_ms:
            self.clock_ms = latest
        cutoff = self.cutoff_ms
        floor = -(2**63) if cutoff is None else cutoff
        logs, terminal_of, pending = self._logs, self._terminal_of, self._pending_labels
        counts = self.counts
        for tx, ts, terminal in zip(
            tx_id.tolist(), ts_ms.tolist(), terminal_id.tolist(), strict=True
        ):
            if tx in terminal_of:
                counts.duplicates += 1
                continue
            if ts <= floor:
                counts.too_old += 1
                continue
            terminal_of[tx] = terminal
            log = logs.get(terminal)
            if log is None:
                log = logs[terminal] = _Log()
            log.ts.append(ts)
            log.tx.append(tx)
            if ts < log.oldest:
                log.oldest = ts
            counts.transactions += 1
            if pending and tx in pending:
                is_fraud, _ = pending.pop(tx)
                if is_fraud:
                    log.fraud.add(tx)
        self._unmatured.append(
            (np.asarray(ts_ms, np.int64).copy(), np.asarray(terminal_id, np.int64).copy())
        )

    def add_labels(self, tx_id: I64, is_fraud: npt.ArrayLike, label_ts_ms: I64) -> None:
        """Apply labels (the latest label of a transaction wins).

        A label for a transaction not seen yet waits for it; a label changing an
        already matured transaction republishes its terminal.
        """
        bound = self.maturity_bound_ms
        flags = np.asarray(is_fraud, dtype=bool).tolist()
        counts = self.counts
        for tx, fraud, label_ts in zip(tx_id.tolist(), flags, label_ts_ms.tolist(), strict=True):
            counts.labels += 1
            terminal = self._terminal_of.get(tx)
            if terminal is None:
                self._pending_labels[tx] = (fraud, label_ts)
                counts.labels_pending += 1
                continue
            log = self._logs[terminal]
            if fraud == (tx in log.fraud):
                continue
            if fraud:
                log.fraud.add(tx)
            else:
                log.fraud.discard(tx)
            counts.label_changes += 1
            if bound is not None and log.ts[log.tx.index(tx)] <= bound:
                self._dirty.add(terminal)

    # --- maintenance and output ----------------------------------------------

    def trim(self) -> int:
        """Drop transactions older than the retention and labels that will never match.

        Terminals left with nothing are forgotten and tombstoned at the next
        :meth:`collect`. Returns the number of transactions dropped.
        """
        cutoff = self.cutoff_ms
        if cutoff is None:
            return 0
        self._mature()
        dropped = 0
        emptied = []
        for terminal, log in self._logs.items():
            if log.oldest > cutoff:
                continue
            keep = [i for i, ts in enumerate(log.ts) if ts > cutoff]
            gone = [log.tx[i] for i in range(len(log.ts)) if log.ts[i] <= cutoff]
            for tx in gone:
                del self._terminal_of[tx]
                log.fraud.discard(tx)
            dropped += len(gone)
            log.ts = [log.ts[i] for i in keep]
            log.tx = [log.tx[i] for i in keep]
            log.oldest = min(log.ts) if log.ts else 2**63 - 1
            if not log.ts:
                emptied.append(terminal)
        for terminal in emptied:
            del self._logs[terminal]
            self._dirty.discard(terminal)
            self._removed.add(terminal)
        stale = [tx for tx, (_, label_ts) in self._pending_labels.items() if label_ts <= cutoff]
        for tx in stale:
            del self._pending_labels[tx]
        self.counts.trimmed += dropped
        return dropped

    def collect(self) -> Publication:
        """Histories of the terminals whose matured history changed since the last call."""
        bound = self.maturity_bound_ms
        if bound is None or self.clock_ms is None:
            return Publication(as_of_ms=-1)
        self._mature()
        cutoff = self.cutoff_ms
        floor = -(2**63) if cutoff is None else cutoff
        records = self._histories(sorted(self._dirty), bound, floor, self.clock_ms)
        tombstones = sorted(self._removed)
        self._dirty.clear()
        self._removed.clear()
        return Publication(self.clock_ms, records, tombstones)

    def _histories(
        self, terminals: list[int], bound: int, floor: int, as_of_ms: int
    ) -> list[HistoryRecord]:
        """Matured, retained history of each terminal, built for all of them at once."""
        ts_list: list[int] = []
        tx_list: list[int] = []
        fraud_list: list[int] = []
        lengths = np.zeros(len(terminals), np.int64)
        for i, terminal in enumerate(terminals):
            log = self._logs[terminal]
            ts_list.extend(log.ts)
            tx_list.extend(log.tx)
            fraud_list.extend(log.fraud)
            lengths[i] = len(log.ts)
        ts_ms = np.asarray(ts_list, np.int64)
        tx_id = np.asarray(tx_list, np.int64)
        group = np.repeat(np.arange(len(terminals), dtype=np.int64), lengths)
        keep = (ts_ms <= bound) & (ts_ms > floor)
        ts_ms, tx_id, group = ts_ms[keep], tx_id[keep], group[keep]
        order = np.lexsort((ts_ms, group))
        ts_ms, tx_id = ts_ms[order], tx_id[order]
        # Transaction ids are unique across terminals, so one membership test serves all.
        flags = np.isin(tx_id, np.asarray(fraud_list, np.int64)).astype(np.uint8)
        counts = np.bincount(group, minlength=len(terminals))
        ends = np.cumsum(counts)
        starts = ends - counts
        return [
            HistoryRecord(terminal, as_of_ms, self.label_delay_ms, ts_ms[a:b], flags[a:b])
            for terminal, a, b in zip(terminals, starts.tolist(), ends.tolist(), strict=True)
        ]

    def _mature(self) -> None:
        """Mark terminals whose transactions crossed the maturity bound."""
        bound = self.maturity_bound_ms
        if bound is None or not self._unmatured:
            return
        if len(self._unmatured) == 1:
            ts_ms, terminal = self._unmatured[0]
        else:
            ts_ms = np.concatenate([ts for ts, _ in self._unmatured])
            terminal = np.concatenate([t for _, t in self._unmatured])
        ripe = ts_ms <= bound
        if ripe.any():
            held = self._logs
            self._dirty.update(t for t in np.unique(terminal[ripe]).tolist() if t in held)
            ts_ms, terminal = ts_ms[~ripe], terminal[~ripe]
        self._unmatured = [(ts_ms, terminal)] if len(ts_ms) else []
