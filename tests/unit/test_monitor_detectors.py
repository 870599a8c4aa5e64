"""Drift detectors on seeded streams, with exact detection points."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from pipeline.monitor.config import HOUR_MS, MonitorConfig
from pipeline.monitor.detectors import (
    ERROR_RATE,
    SCORE_MEAN,
    SCORE_PSI,
    DistributionDriftDetector,
    ErrorDriftDetector,
    bin_groups,
    population_stability_index,
)
from pipeline.monitor.records import Outcome, WindowStats, window_stats
from pipeline.monitor.summarize import summarize_windows

T0 = 1_530_403_200_000
KEY = ("m", "1", "champion")
FEATURES = ["amount", "card_amount_to_mean_30d"]


def _windows(seed: int, hours: int, shift_at: int | None, per_hour: int = 400) -> list[WindowStats]:
    """Seeded hourly windows; from ``shift_at`` amounts and scores scale up by 1.6."""
    rng = np.random.default_rng(seed)
    out = []
    for hour in range(hours):
        factor = 1.6 if shift_at is not None and hour >= shift_at else 1.0
        amount = rng.gamma(2.0, 25.0, per_hour) * factor
        ratio = rng.gamma(4.0, 0.25, per_hour) * factor
        scores = np.clip(rng.beta(1.0, 40.0, per_hour) * factor, 0, 1)
        ts = T0 + hour * HOUR_MS + rng.integers(0, HOUR_MS, per_hour)
        (record,) = summarize_windows(
            ts,
            scores,
            np.column_stack([amount, ratio]),
            FEATURES,
            window_ms=HOUR_MS,
            model_name="m",
            model_version="1",
            worker_id="w",
        )
        out.append(window_stats(record))
    return out


def _run(windows: list[WindowStats], config: MonitorConfig) -> list[tuple[int, str]]:
    detector = DistributionDriftDetector(config, KEY)
    alarms = []
    for window in windows:
        for signal in detector.update(window):
            assert signal.window_end == window.window_end
            alarms.append(((window.window_end - T0) // HOUR_MS, signal.signal))
    return alarms


CONFIG = MonitorConfig(block_min_count=2000, reference_blocks=6)  # 5 hours per block


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_alarm_on_a_stationary_stream(seed: int) -> None:
    assert _run(_windows(seed, 24 * 20, None), CONFIG) == []


def test_shift_detected_at_exact_points() -> None:
    alarms = _run(_windows(1, 24 * 5, shift_at=60), CONFIG)
    # blocks end every 5 hours; the reference is hours 0..30; the shift starts
    # at hour 60, so the block [60, 65) is the first shifted one, and the
    # clipped shift needs two blocks to cross the threshold.
    assert alarms == [
        (70, "feature:amount"),
        (70, "feature:card_amount_to_mean_30d"),
        (70, SCORE_MEAN),
        (75, SCORE_PSI),
    ]


def test_one_outlying_block_raises_no_alarm() -> None:
    windows = _windows(2, 24 * 4, None)
    spike = windows[50]
    mean = spike.feature_mean.copy()
    mean[0] *= 10  # one heavy-tailed hour
    windows[50] = type(spike)(**{**spike.__dict__, "feature_mean": mean})
    assert _run(windows, CONFIG) == []


def test_psi_groups_sparse_tail_bins() -> None:
    reference = np.array([900, 50, 20, 10, 5, 5, 5, 3, 1, 1])
    groups = bin_groups(reference, min_share=0.02)
    assert [(g.start, g.stop) for g in groups] == [(0, 1), (1, 2), (2, 3), (3, 10)]
    assert population_stability_index(reference, reference, groups) == pytest.approx(0.0)
    shifted = np.array([700, 150, 60, 40, 20, 10, 10, 5, 3, 2])
    assert population_stability_index(reference, shifted, groups) > 0.1


def _outcomes(
    seed: int, n: int, rate_before: float, rate_after: float, change: int
) -> Iterator[Outcome]:
    rng = np.random.default_rng(seed)
    rates = np.where(np.arange(n) < change, rate_before, rate_after)
    errors = rng.random(n) < rates
    for i, error in enumerate(errors):
        yield Outcome(i, i % 50, T0 + i * 8_640, 0.9, bool(error), False, "m", "1", "champion", T0)


def test_error_rate_rise_detected_at_exact_point() -> None:
    detector = ErrorDriftDetector(MonitorConfig(), KEY)
    signals = [
        (o.transaction_id, s)
        for o in _outcomes(1, 60_000, 0.015, 0.03, 30_000)
        if (s := detector.update(o)) is not None
    ]
    assert [i for i, _ in signals] == [32_095]
    signal = signals[0][1]
    assert signal.signal == ERROR_RATE and signal.detector == "adwin"
    assert signal.statistic > 0.02


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_error_detector_silent_when_stationary_or_improving(seed: int) -> None:
    detector = ErrorDriftDetector(MonitorConfig(), KEY)
    fired = [o for o in _outcomes(seed, 60_000, 0.03, 0.015, 30_000) if detector.update(o)]
    assert fired == []
