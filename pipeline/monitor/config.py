"""Knobs of the monitor, with conservative defaults.

Every duration is event time (transaction time, epoch ms), so an accelerated
replay detects at the same simulated moments as live traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

#: Features watched for covariate shift. Short-window ratios (7 days) are left
#: out: a card with a tiny recent mean sends a block's mean far out on its own.
DEFAULT_WATCHED_FEATURES: tuple[str, ...] = ("amount", "card_amount_to_mean_30d")


@dataclass(frozen=True)
class MonitorConfig:
    """How the monitor merges, detects, measures and triggers."""

    # --- merging per-worker window statistics ---------------------------------
    stats_grace_ms: int = HOUR_MS
    """A window closes once stats this far past its end have arrived (late workers)."""
    worker_ttl_ms: int = 6 * HOUR_MS
    """A worker silent for this long is no longer expected to report a window."""

    # --- fast signal: score and feature distributions -------------------------
    block_min_count: int = 2000
    """Consecutive windows are pooled until a block holds this many transactions."""
    reference_blocks: int = 6
    """Blocks after start (per model version) that form the reference distribution."""
    watched_features: tuple[str, ...] = DEFAULT_WATCHED_FEATURES
    shift_delta: float = 0.05
    """Page-Hinkley slack on standardized mean shifts (noise tolerated per block)."""
    shift_threshold: float = 0.6
    """Page-Hinkley alarm level on standardized mean shifts."""
    shift_cap: float = 0.5
    """Shifts are clipped to this size, so one outlying block cannot raise an alarm alone."""
    psi_delta: float = 0.02
    psi_threshold: float = 0.25
    psi_min_bin_share: float = 0.02
    """Score bins are merged until each holds this share of the reference."""

    # --- slow signal: label-based error stream --------------------------------
    error_adwin_delta: float = 1e-3
    """ADWIN confidence: smaller means fewer false alarms and later detection."""
    error_min_outcomes: int = 1000
    """Error-rate alarms need this many outcomes since the last reset."""
    error_skip_in_sample: bool = True
    """Keep outcomes of transactions inside a model version's training data range
    (from the registry) from its error detector: in-sample errors say nothing of drift."""

    # --- online quality --------------------------------------------------------
    quality_window_ms: int = 7 * DAY_MS
    quality_update_ms: int = HOUR_MS
    """Sliding-window quality is recomputed each time event time advances this much."""
    card_precision_k: int = 100
    day_close_after_ms: int = DAY_MS
    """A day's card precision@k is computed once outcomes this far past it arrived."""
    retention_ms: int = 35 * DAY_MS
    """Outcomes older than the newest minus this are dead-lettered (state is gone)."""

    # --- retraining trigger ----------------------------------------------------
    retrain_cooldown_ms: int = 3 * DAY_MS
    """After a retrain request, drift of the same model asks for none for this long."""
    retrain_lookback_ms: int = 28 * DAY_MS
    """A retrain request asks for training data over this span before the drift."""
