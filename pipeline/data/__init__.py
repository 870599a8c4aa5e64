"""Transactions data: the simulator, drift injection, and the data-file reader/writer."""

from __future__ import annotations

from pipeline.data.drift import DriftSpec, parse_drift_spec
from pipeline.data.errors import DataError, DataFileError, DataValidationError, DriftSpecError
from pipeline.data.io import read_transactions, timestamps_ms, write_transactions
from pipeline.data.schema import FraudScenario
from pipeline.data.simulator import SimulatorConfig, simulate

__all__ = [
    "DataError",
    "DataFileError",
    "DataValidationError",
    "DriftSpec",
    "DriftSpecError",
    "FraudScenario",
    "SimulatorConfig",
    "parse_drift_spec",
    "read_transactions",
    "simulate",
    "timestamps_ms",
    "write_transactions",
]
