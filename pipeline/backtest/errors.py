"""Errors of the backtest."""

from __future__ import annotations

from pipeline.errors import FraudError


class BacktestError(FraudError):
    """A backtest cannot run or cannot write its report (bad range, bad target, bad models)."""
