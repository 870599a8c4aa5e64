"""Customer and terminal profiles of the simulator, and which terminals each customer uses.

Follows the Fraud Detection Handbook: locations uniform on a 100 x 100 square,
mean amount U(5, 100) with spread mean/2, mean transactions per day U(0, 4), and
a customer uses the terminals strictly within ``radius`` of home.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

GRID_SIZE = 100.0
_CHUNK = 512  # customers per block of the distance computation (bounds memory)


@dataclass(frozen=True)
class CustomerProfiles:
    """One row per customer (index = customer id = card id)."""

    x: FloatArray
    y: FloatArray
    mean_amount: FloatArray
    std_amount: FloatArray
    mean_tx_per_day: FloatArray

    @property
    def count(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class TerminalProfiles:
    """One row per terminal (index = terminal id)."""

    x: FloatArray
    y: FloatArray

    @property
    def count(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Reachability:
    """Terminals within reach of each customer, in CSR form.

    Customer ``c`` reaches ``terminals[offsets[c]:offsets[c + 1]]``.
    """

    offsets: IntArray
    terminals: IntArray

    @property
    def counts(self) -> IntArray:
        return np.diff(self.offsets)


def make_customers(n: int, rng: np.random.Generator) -> CustomerProfiles:
    """Draw ``n`` customer profiles."""
    x = rng.uniform(0.0, GRID_SIZE, n)
    y = rng.uniform(0.0, GRID_SIZE, n)
    mean_amount = rng.uniform(5.0, 100.0, n)
    mean_tx_per_day = rng.uniform(0.0, 4.0, n)
    return CustomerProfiles(x, y, mean_amount, mean_amount / 2.0, mean_tx_per_day)


def make_terminals(n: int, rng: np.random.Generator) -> TerminalProfiles:
    """Draw ``n`` terminal locations."""
    return TerminalProfiles(rng.uniform(0.0, GRID_SIZE, n), rng.uniform(0.0, GRID_SIZE, n))


def reachable_terminals(
    customers: CustomerProfiles, terminals: TerminalProfiles, radius: float
) -> Reachability:
    """Terminals strictly closer than ``radius`` to each customer, ascending ids."""
    r2 = radius * radius
    counts = np.zeros(customers.count, dtype=np.int64)
    blocks: list[IntArray] = []
    for start in range(0, customers.count, _CHUNK):
        stop = min(start + _CHUNK, customers.count)
        dx = customers.x[start:stop, None] - terminals.x[None, :]
        dy = customers.y[start:stop, None] - terminals.y[None, :]
        rows, cols = np.nonzero(dx * dx + dy * dy < r2)
        counts[start:stop] = np.bincount(rows, minlength=stop - start)
        blocks.append(cols.astype(np.int64))
    offsets = np.zeros(customers.count + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int64)
    return Reachability(offsets, flat)
