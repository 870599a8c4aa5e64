"""Replay history into Kafka: transactions in time order, labels when they become known.

Usage::

    summary = replay(settings, read_transactions("data/tx.parquet"), labels=True)
    print(summary.describe())
"""

from pipeline.replay.errors import ReplayError
from pipeline.replay.events import EventKind, EventPlan, plan_events, select_rows
from pipeline.replay.pacing import Pacer, wait_until_due
from pipeline.replay.payloads import (
    FORMATS,
    PayloadEncoder,
    PayloadFormat,
    ReplayColumns,
    card_keys,
)
from pipeline.replay.run import replay
from pipeline.replay.summary import ReplaySummary

__all__ = [
    "FORMATS",
    "EventKind",
    "EventPlan",
    "Pacer",
    "PayloadEncoder",
    "PayloadFormat",
    "ReplayColumns",
    "ReplayError",
    "ReplaySummary",
    "card_keys",
    "plan_events",
    "replay",
    "select_rows",
    "wait_until_due",
]
