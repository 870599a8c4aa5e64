"""Fraud injected into simulated transactions: the handbook's three scenarios and card testing.

Scenarios are applied in order 1, 2, 3, card testing; a later one overwrites the
scenario code of an earlier one, as in the handbook. Every random choice made
for day ``d`` comes from a generator seeded by ``(seed, stream, d)``, so drift
that starts on day ``D`` leaves everything before ``D`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.data.drift import CardTesting
from pipeline.data.schema import FraudScenario

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Int8Array = npt.NDArray[np.int8]

LARGE_AMOUNT = 220.0
TERMINAL_WINDOW_DAYS = 28
CUSTOMER_WINDOW_DAYS = 14
CUSTOMER_AMOUNT_FACTOR = 5.0
SECONDS_PER_DAY = 86_400

# stream tags: independent random streams per purpose
STREAM_TERMINALS = 2
STREAM_CUSTOMERS = 3
STREAM_CARD_TESTING = 4

_PROBE_GAP_S = (10, 120)  # seconds between consecutive charges of a burst


def day_rng(seed: int, stream: int, day: int) -> np.random.Generator:
    """The generator for one purpose on one day."""
    return np.random.default_rng([seed, stream, day])


def label_large_amounts(amount: FloatArray, scenario: Int8Array) -> None:
    """Scenario 1: every amount above 220 is fraud."""
    scenario[amount > LARGE_AMOUNT] = FraudScenario.LARGE_AMOUNT


class _WindowIndex:
    """Finds the transactions of one key (terminal or customer) within a span of days."""

    def __init__(self, key: IntArray, day: IntArray, span: int) -> None:
        self._stride = int(day.max(initial=0)) + span + 1
        composite = key * self._stride + day
        self._order = np.argsort(composite, kind="stable")
        self._sorted = composite[self._order]

    def rows(self, keys: IntArray, first_day: int, days: int) -> IntArray:
        """Rows whose key is in ``keys`` and day in [first_day, first_day + days)."""
        lo = np.searchsorted(self._sorted, keys * self._stride + first_day, side="left")
        hi = np.searchsorted(self._sorted, keys * self._stride + first_day + days, side="left")
        if lo.size == 0:
            return np.zeros(0, dtype=np.int64)
        parts = [self._order[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]
        return np.sort(np.concatenate(parts))


def compromise_terminals(
    day: IntArray,
    terminal: IntArray,
    scenario: Int8Array,
    per_day: list[int],
    n_terminals: int,
    seed: int,
) -> None:
    """Scenario 2: each day ``per_day[d]`` terminals are compromised for 28 days."""
    index = _WindowIndex(terminal, day, TERMINAL_WINDOW_DAYS)
    for d, count in enumerate(per_day):
        rng = day_rng(seed, STREAM_TERMINALS, d)
        chosen = rng.choice(n_terminals, size=min(count, n_terminals), replace=False)
        rows = index.rows(np.asarray(chosen, dtype=np.int64), d, TERMINAL_WINDOW_DAYS)
        scenario[rows] = FraudScenario.COMPROMISED_TERMINAL


def compromise_customers(
    day: IntArray,
    customer: IntArray,
    amount: FloatArray,
    scenario: Int8Array,
    per_day: list[int],
    n_customers: int,
    seed: int,
) -> None:
    """Scenario 3: each day ``per_day[d]`` cards are compromised for 14 days.

    A third (rounded down) of their transactions in that window, drawn at
    random, get their amount multiplied by 5 and become fraud. Unlike the
    handbook, a transaction is never multiplied twice by overlapping windows.
    """
    index = _WindowIndex(customer, day, CUSTOMER_WINDOW_DAYS)
    for d, count in enumerate(per_day):
        rng = day_rng(seed, STREAM_CUSTOMERS, d)
        chosen = rng.choice(n_customers, size=min(count, n_customers), replace=False)
        rows = index.rows(np.asarray(chosen, dtype=np.int64), d, CUSTOMER_WINDOW_DAYS)
        # A card compromised again while still compromised is not charged x25:
        # rows already defrauded count toward the third but are not picked again.
        fresh = rows[scenario[rows] != FraudScenario.COMPROMISED_CARD]
        wanted = max(0, rows.size // 3 - (rows.size - fresh.size))
        picked = rng.choice(fresh, size=min(wanted, fresh.size), replace=False)
        amount[picked] = np.round(amount[picked] * CUSTOMER_AMOUNT_FACTOR, 2)
        scenario[picked] = FraudScenario.COMPROMISED_CARD


@dataclass(frozen=True)
class Transactions:
    """Columns of simulated transactions before sorting (``second`` = second of the day)."""

    day: IntArray
    second: IntArray
    customer: IntArray
    terminal: IntArray
    amount: FloatArray
    scenario: Int8Array


def card_testing_bursts(
    spec: CardTesting, n_days: int, n_customers: int, n_terminals: int, seed: int
) -> Transactions:
    """The card-testing transactions from ``spec.day`` on, all labelled scenario 4.

    Per day, ``cards_per_day`` distinct cards each get one burst at one random
    terminal: 2..``probes`` charges in (0, ``probe_max``], then a cash-out in
    [``cashout_min``, ``cashout_max``], consecutive charges 10-120 s apart.
    """
    parts: list[Transactions] = []
    lo_gap, hi_gap = _PROBE_GAP_S
    longest = spec.probes * hi_gap
    for d in range(spec.day, n_days):
        rng = day_rng(seed, STREAM_CARD_TESTING, d)
        n = min(spec.cards_per_day, n_customers)
        cards = rng.choice(n_customers, size=n, replace=False).astype(np.int64)
        terminals = rng.integers(0, n_terminals, size=n, dtype=np.int64)
        n_probes = rng.integers(2, spec.probes + 1, size=n, dtype=np.int64)
        start = rng.integers(1, SECONDS_PER_DAY - longest, size=n, dtype=np.int64)
        gaps = rng.integers(lo_gap, hi_gap + 1, size=(n, spec.probes + 1), dtype=np.int64)
        gaps[:, 0] = 0
        probe_amounts = rng.uniform(0.0, spec.probe_max, size=(n, spec.probes + 1))
        cashout = rng.uniform(spec.cashout_min, spec.cashout_max, size=n)

        position = np.arange(spec.probes + 1)[None, :]
        used = position <= n_probes[:, None]  # probes then the cash-out, per row
        seconds = start[:, None] + np.cumsum(gaps, axis=1)
        amounts = np.maximum(np.round(probe_amounts, 2), 0.01)
        is_cashout = position == n_probes[:, None]
        amounts = np.where(is_cashout, np.round(cashout, 2)[:, None], amounts)
        rows = int(used.sum())
        parts.append(
            Transactions(
                day=np.full(rows, d, dtype=np.int64),
                second=seconds[used],
                customer=np.broadcast_to(cards[:, None], used.shape)[used],
                terminal=np.broadcast_to(terminals[:, None], used.shape)[used],
                amount=amounts[used],
                scenario=np.full(rows, FraudScenario.CARD_TESTING, dtype=np.int8),
            )
        )
    return concat_transactions(parts)


def concat_transactions(parts: list[Transactions]) -> Transactions:
    """Concatenate column-wise; an empty list gives zero rows."""
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Transactions(empty, empty, empty, empty, np.zeros(0), np.zeros(0, dtype=np.int8))
    return Transactions(
        day=np.concatenate([p.day for p in parts]),
        second=np.concatenate([p.second for p in parts]),
        customer=np.concatenate([p.customer for p in parts]),
        terminal=np.concatenate([p.terminal for p in parts]),
        amount=np.concatenate([p.amount for p in parts]),
        scenario=np.concatenate([p.scenario for p in parts]),
    )
