"""Nearline terminal features: the job that publishes per-terminal histories and the
global table scorers read them from."""

from pipeline.terminal.backfill import BackfillSummary, backfill
from pipeline.terminal.errors import TerminalFeaturesError
from pipeline.terminal.job import JobConfig, JobSummary, TerminalFeaturesJob
from pipeline.terminal.record import HistoryRecord
from pipeline.terminal.snapshot import histories_as_of, histories_from_frame
from pipeline.terminal.state import DEFAULT_RETENTION_MS, Publication, TerminalState
from pipeline.terminal.store import HistoryStore
from pipeline.terminal.table import TerminalTable

__all__ = [
    "DEFAULT_RETENTION_MS",
    "BackfillSummary",
    "HistoryRecord",
    "HistoryStore",
    "JobConfig",
    "JobSummary",
    "Publication",
    "TerminalFeaturesError",
    "TerminalFeaturesJob",
    "TerminalState",
    "TerminalTable",
    "backfill",
    "histories_as_of",
    "histories_from_frame",
]
