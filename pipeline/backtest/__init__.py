"""Backtests: replay history through registered models and report them side by side."""

from pipeline.backtest.errors import BacktestError
from pipeline.backtest.report import write_report
from pipeline.backtest.run import (
    WARMUP_DAYS,
    BacktestConfig,
    BacktestResult,
    DataWindow,
    ModelResult,
    load_models,
    run_backtest,
)
from pipeline.backtest.summary import summary

__all__ = [
    "WARMUP_DAYS",
    "BacktestConfig",
    "BacktestError",
    "BacktestResult",
    "DataWindow",
    "ModelResult",
    "load_models",
    "run_backtest",
    "summary",
    "write_report",
]
