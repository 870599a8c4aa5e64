"""Online quality of one model version from labelled outcomes, on event time.

Over a sliding window of transaction time: precision and recall of alerts
(review/decline is the alert threshold) and average precision of the score.
Per closed day: card precision@k, leaving out cards already detected on
earlier days, as the handbook defines it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from pipeline.model.metrics import average_precision, card_precision_at_k
from pipeline.monitor.config import DAY_MS, MonitorConfig
from pipeline.monitor.records import Outcome


@dataclass(frozen=True)
class QualitySnapshot:
    """Quality over the sliding window; NaN where undefined (no alerts, no fraud)."""

    outcomes: int
    frauds: int
    alerts: int
    precision: float
    recall: float
    average_precision: float


@dataclass(frozen=True)
class DayCardPrecision:
    """Card precision@k of one closed day (start of day, epoch ms UTC)."""

    day_start: int
    value: float
    cards: int


class QualityTracker:
    """Sliding-window and per-day quality of one model version."""

    def __init__(self, config: MonitorConfig | None = None) -> None:
        self.config = config or MonitorConfig()
        self._window: deque[tuple[int, float, bool, bool]] = deque()
        self._days: dict[int, list[tuple[int, float, bool]]] = {}
        self._detected: dict[int, int] = {}  # card -> day it was detected
        self._closed_before = -1
        self.watermark = 0

    def add(self, outcome: Outcome) -> list[DayCardPrecision]:
        """Take one outcome; return the days it closes (their card precision@k)."""
        self.watermark = max(self.watermark, outcome.timestamp)
        self._window.append((outcome.timestamp, outcome.score, outcome.is_fraud, outcome.alerted))
        day = outcome.timestamp // DAY_MS * DAY_MS
        if day > self._closed_before:
            self._days.setdefault(day, []).append(
                (outcome.card_id, outcome.score, outcome.is_fraud)
            )
        self._evict()
        return self._close_days()

    def snapshot(self) -> QualitySnapshot:
        """Quality over the last ``quality_window_ms`` of transaction time."""
        self._evict()
        if not self._window:
            nan = float("nan")
            return QualitySnapshot(0, 0, 0, nan, nan, nan)
        rows = np.array([(s, f, a) for _, s, f, a in self._window], dtype=np.float64)
        score, fraud, alert = rows[:, 0], rows[:, 1].astype(bool), rows[:, 2].astype(bool)
        tp = int((fraud & alert).sum())
        n_alerts, n_frauds = int(alert.sum()), int(fraud.sum())
        return QualitySnapshot(
            outcomes=len(rows),
            frauds=n_frauds,
            alerts=n_alerts,
            precision=tp / n_alerts if n_alerts else float("nan"),
            recall=tp / n_frauds if n_frauds else float("nan"),
            average_precision=average_precision(fraud, score) if n_frauds else float("nan"),
        )

    def _evict(self) -> None:
        horizon = self.watermark - self.config.quality_window_ms
        while self._window and self._window[0][0] < horizon:
            self._window.popleft()

    def _close_days(self) -> list[DayCardPrecision]:
        out: list[DayCardPrecision] = []
        horizon = self.watermark - self.config.day_close_after_ms
        for day in sorted(self._days):
            if day + DAY_MS > horizon:
                break
            rows = self._days.pop(day)
            self._closed_before = day
            rows = [r for r in rows if r[0] not in self._detected]
            if not rows:
                continue
            cards = np.array([r[0] for r in rows], dtype=np.int64)
            scores = np.array([r[1] for r in rows], dtype=np.float64)
            frauds = np.array([r[2] for r in rows], dtype=bool)
            k = self.config.card_precision_k
            value = card_precision_at_k(np.zeros(len(rows)), cards, frauds, scores, k)
            self._remember_detected(day, cards, scores, frauds, k)
            out.append(DayCardPrecision(day, value, len(np.unique(cards))))
        return out

    def _remember_detected(
        self, day: int, cards: np.ndarray, scores: np.ndarray, frauds: np.ndarray, k: int
    ) -> None:
        uniq, inverse = np.unique(cards, return_inverse=True)
        best = np.full(len(uniq), -np.inf)
        np.maximum.at(best, inverse, scores)
        compromised = np.zeros(len(uniq), dtype=bool)
        np.logical_or.at(compromised, inverse, frauds)
        top = np.lexsort((uniq, -best))[:k]
        for card in uniq[top][compromised[top]].tolist():
            self._detected[int(card)] = day
        horizon = day - self.config.retention_ms
        for card in [c for c, d in self._detected.items() if d < horizon]:
            del self._detected[card]
