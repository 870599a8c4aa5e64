"""Histories of every terminal at once, from a data file (the job's batch mode).

Vectorized over the whole frame. It gives what the streaming job publishes
once its clock reaches ``as_of`` with every label arrived by its
transaction's maturity: the offline evaluator's assumption, so a scorer
replaying the file against these histories computes the offline values.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.features.offline import timestamps_to_ms
from pipeline.terminal.errors import TerminalFeaturesError
from pipeline.terminal.record import HistoryRecord

I64 = npt.NDArray[np.int64]


def histories_as_of(
    terminal_id: I64,
    ts_ms: I64,
    is_fraud: npt.ArrayLike,
    as_of_ms: int,
    label_delay_ms: int,
    retention_ms: int | None = None,
) -> list[HistoryRecord]:
    """One record per terminal with matured transactions (``ts <= as_of - delay``).

    ``retention_ms`` keeps only ``ts > as_of - delay - retention``; ``None``
    keeps all, so queries anywhere in the data's time range are answered.
    """
    terminal_id = np.asarray(terminal_id, np.int64)
    ts_ms = np.asarray(ts_ms, np.int64)
    flags = np.asarray(is_fraud, np.int64)
    if not len(terminal_id) == len(ts_ms) == len(flags):
        raise TerminalFeaturesError("terminal_id, timestamp and is_fraud differ in length")
    bound = as_of_ms - label_delay_ms
    keep = ts_ms <= bound
    if retention_ms is not None:
        keep &= ts_ms > bound - retention_ms
    terminal_id, ts_ms, flags = terminal_id[keep], ts_ms[keep], flags[keep]
    if len(ts_ms) == 0:
        return []
    order = np.lexsort((ts_ms, terminal_id))
    terminal_id, ts_ms = terminal_id[order], ts_ms[order]
    fraud = (flags[order] > 0).astype(np.uint8)
    starts = np.flatnonzero(np.r_[True, terminal_id[1:] != terminal_id[:-1]])
    ends = np.append(starts[1:], len(ts_ms))
    return [
        HistoryRecord(int(terminal_id[a]), as_of_ms, label_delay_ms, ts_ms[a:b], fraud[a:b])
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def histories_from_frame(
    frame: pd.DataFrame,
    label_delay_ms: int,
    as_of_ms: int | None = None,
    retention_ms: int | None = None,
) -> list[HistoryRecord]:
    """:func:`histories_as_of` of a transactions frame with ``is_fraud`` (default: as of its end)."""
    missing = [c for c in ("timestamp", "terminal_id", "is_fraud") if c not in frame.columns]
    if missing:
        raise TerminalFeaturesError(f"transactions lack column(s): {', '.join(missing)}")
    if len(frame) == 0:
        return []
    ts_ms = timestamps_to_ms(frame["timestamp"])
    end = int(ts_ms.max()) if as_of_ms is None else as_of_ms
    return histories_as_of(
        frame["terminal_id"].to_numpy(np.int64),
        ts_ms,
        frame["is_fraud"].fillna(0).to_numpy(np.int64),
        end,
        label_delay_ms,
        retention_ms,
    )
