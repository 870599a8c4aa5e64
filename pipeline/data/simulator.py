"""Card-transaction simulator after the Fraud Detection Handbook, with optional drift.

Per customer and day the number of transactions is Poisson(mean per day); time
of day is N(12:00, 20000 s) truncated to whole seconds, and a draw outside the
day is discarded, as the handbook's generator does (this is what yields its
published 1,754,155 transactions); amount is N(mean, mean/2), a negative draw
replaced by U(0, 2 mean), rounded to cents; the terminal is uniform among those
within reach (a customer with none makes no transactions). Fraud follows
:mod:`pipeline.data.fraud`, drift :mod:`pipeline.data.drift`.

The output is deterministic given :attr:`SimulatorConfig.seed`, and drift from
day ``D`` leaves every transaction before ``D`` (ids included) unchanged.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.data import fraud
from pipeline.data.drift import DriftSpec
from pipeline.data.errors import SimulationConfigError
from pipeline.data.fraud import SECONDS_PER_DAY, Transactions
from pipeline.data.profiles import (
    CustomerProfiles,
    FloatArray,
    Reachability,
    make_customers,
    make_terminals,
    reachable_terminals,
)
from pipeline.data.schema import DTYPES

TERMINALS_COMPROMISED_PER_DAY = 2
CUSTOMERS_COMPROMISED_PER_DAY = 3
_TIME_MEAN_S = 43_200.0
_TIME_STD_S = 20_000.0

# stream tags (fraud.py uses 2..4)
_STREAM_CUSTOMERS = 0
_STREAM_TERMINALS = 1
_STREAM_TRANSACTIONS = 5
_STREAM_COVARIATE = 6


@dataclass(frozen=True)
class SimulatorConfig:
    """What to simulate; the defaults are the handbook's published settings."""

    n_customers: int = 5000
    n_terminals: int = 10_000
    n_days: int = 183
    start_date: dt.date = dt.date(2018, 4, 1)
    seed: int = 0
    radius: float = 5.0
    drift: DriftSpec = field(default_factory=DriftSpec)

    def __post_init__(self) -> None:
        if isinstance(self.start_date, str):
            object.__setattr__(self, "start_date", _parse_date(self.start_date))
        checks = [
            (self.n_customers >= 1, "n_customers must be >= 1"),
            (self.n_terminals >= 1, "n_terminals must be >= 1"),
            (self.n_days >= 1, "n_days must be >= 1"),
            (self.seed >= 0, "seed must be >= 0"),
            (self.radius > 0, "radius must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise SimulationConfigError(message)
        last = self.drift.last_day
        if last is not None and last >= self.n_days:
            raise SimulationConfigError(
                f"drift day {last} is not within the {self.n_days} simulated days "
                f"(days count from 0)"
            )


def simulate(config: SimulatorConfig, progress: bool = False) -> pd.DataFrame:
    """Simulate transactions; returns the canonical frame sorted by timestamp.

    Columns: transaction_id (0..n-1 in time order), timestamp (tz-naive UTC),
    card_id (= customer id), terminal_id, amount, is_fraud, fraud_scenario.
    """
    seed = config.seed
    customers = make_customers(config.n_customers, _rng(seed, _STREAM_CUSTOMERS))
    terminals = make_terminals(config.n_terminals, _rng(seed, _STREAM_TERMINALS))
    reach = reachable_terminals(customers, terminals, config.radius)
    amount_factor = _covariate_factors(config)

    bar = tqdm(
        total=config.n_days,
        desc="simulating",
        unit="day",
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )
    rng = _rng(seed, _STREAM_TRANSACTIONS)
    parts = []
    with bar:
        for day in range(config.n_days):
            parts.append(_one_day(day, customers, reach, amount_factor(day), rng))
            bar.update(1)
    tx = fraud.concat_transactions(parts)

    _inject_fraud(tx, config)
    drift = config.drift
    if drift.card_testing is not None:
        extra = fraud.card_testing_bursts(
            drift.card_testing, config.n_days, config.n_customers, config.n_terminals, seed
        )
        tx = fraud.concat_transactions([tx, extra])
    return _to_frame(tx, config.start_date)


def _one_day(
    day: int,
    customers: CustomerProfiles,
    reach: Reachability,
    amount_factor: FloatArray,
    rng: np.random.Generator,
) -> Transactions:
    """One day's legitimate transactions for every customer."""
    counts = rng.poisson(customers.mean_tx_per_day)
    customer = np.repeat(np.arange(customers.count, dtype=np.int64), counts)
    n = customer.size
    # Draw every variate for every candidate, whatever drift does: the stream
    # then stays aligned, so drift never changes other transactions.
    second = np.trunc(rng.normal(_TIME_MEAN_S, _TIME_STD_S, n)).astype(np.int64)
    z = rng.standard_normal(n)
    fallback = rng.random(n)
    pick = rng.random(n)

    reach_counts = reach.counts[customer]
    keep = (second > 0) & (second < SECONDS_PER_DAY) & (reach_counts > 0)
    customer, second = customer[keep], second[keep]
    z, fallback, pick = z[keep], fallback[keep], pick[keep]
    reach_counts = reach_counts[keep]

    factor = amount_factor[customer]
    mean = customers.mean_amount[customer] * factor
    amount = mean + customers.std_amount[customer] * factor * z
    negative = amount < 0
    amount[negative] = fallback[negative] * 2.0 * mean[negative]
    amount = np.round(amount, 2)

    slot = np.minimum((pick * reach_counts).astype(np.int64), reach_counts - 1)
    terminal = reach.terminals[reach.offsets[customer] + slot]
    m = customer.size
    return Transactions(
        day=np.full(m, day, dtype=np.int64),
        second=second,
        customer=customer,
        terminal=terminal,
        amount=amount,
        scenario=np.zeros(m, dtype=np.int8),
    )


def _covariate_factors(config: SimulatorConfig) -> Callable[[int], FloatArray]:
    """A function day -> per-customer amount multiplier (covariate shift)."""
    ones = np.ones(config.n_customers)
    shift = config.drift.covariate
    if shift is None:
        return lambda day: ones
    rng = _rng(config.seed, _STREAM_COVARIATE)
    n_shifted = max(1, round(shift.share * config.n_customers))
    shifted = rng.choice(config.n_customers, size=n_shifted, replace=False)
    after = ones.copy()
    after[shifted] = shift.factor
    return lambda day: after if day >= shift.day else ones


def _inject_fraud(tx: Transactions, config: SimulatorConfig) -> None:
    """Label scenarios 1-3 in place (amounts of scenario 3 are multiplied)."""
    rate = config.drift.fraud_rate
    terminals_per_day = [TERMINALS_COMPROMISED_PER_DAY] * config.n_days
    customers_per_day = [CUSTOMERS_COMPROMISED_PER_DAY] * config.n_days
    if rate is not None:
        for d in range(rate.day, config.n_days):
            terminals_per_day[d] = rate.terminals_per_day(TERMINALS_COMPROMISED_PER_DAY)
            customers_per_day[d] = rate.customers_per_day(CUSTOMERS_COMPROMISED_PER_DAY)
    fraud.label_large_amounts(tx.amount, tx.scenario)
    fraud.compromise_terminals(
        tx.day, tx.terminal, tx.scenario, terminals_per_day, config.n_terminals, config.seed
    )
    fraud.compromise_customers(
        tx.day,
        tx.customer,
        tx.amount,
        tx.scenario,
        customers_per_day,
        config.n_customers,
        config.seed,
    )


def _to_frame(tx: Transactions, start_date: dt.date) -> pd.DataFrame:
    """Sort by time (ties by card) and build the canonical frame."""
    seconds = tx.day * SECONDS_PER_DAY + tx.second
    order = np.lexsort((tx.customer, seconds))
    origin = np.datetime64(start_date, "ns").astype(np.int64)
    stamps = (origin + seconds[order] * 1_000_000_000).view("datetime64[ns]")
    scenario = tx.scenario[order]
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(order.size, dtype=np.int64),
            "timestamp": stamps,
            "card_id": tx.customer[order],
            "terminal_id": tx.terminal[order],
            "amount": tx.amount[order],
            "is_fraud": (scenario != 0).astype(np.int8),
            "fraud_scenario": scenario,
        }
    )
    return frame.astype(DTYPES)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise SimulationConfigError(f"start_date must be YYYY-MM-DD, got {text!r}") from None
