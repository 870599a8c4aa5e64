"""From drift to retraining: DriftEvent records, and RetrainRequests without storms.

Every detector signal becomes a DriftEvent. The trigger consumes DriftEvents
(from this monitor or any other instance, so duplicates are expected) and asks
for at most one retraining per model per cooldown, on event time: the same
event id twice, the same drift (model, signal, window) seen again, or any
drift within ``retrain_cooldown_ms`` after the last request asks for nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.monitor.config import MonitorConfig
from pipeline.monitor.detectors import DriftSignal

_SEEN_LIMIT = 10_000


def drift_event(signal: DriftSignal, detected_at_ms: int) -> dict[str, Any]:
    """The DriftEvent record of a signal.

    The id is derived from what drifted and where, so two monitor instances
    seeing the same drift produce the same id.
    """
    identity = "|".join(
        (
            signal.model_name,
            signal.model_version,
            signal.rollout_arm,
            signal.detector,
            signal.signal,
            str(signal.window_start),
            str(signal.window_end),
        )
    )
    return {
        "event_id": hashlib.sha256(identity.encode()).hexdigest()[:32],
        "model_name": signal.model_name,
        "model_version": signal.model_version,
        "detector": signal.detector,
        "signal": signal.signal,
        "statistic": float(signal.statistic),
        "threshold": signal.threshold,
        "window_start": int(signal.window_start),
        "window_end": int(signal.window_end),
        "detected_at": int(detected_at_ms),
        "details": {"rollout_arm": signal.rollout_arm, **signal.details},
    }


@dataclass(frozen=True)
class TriggerDecision:
    """What the trigger made of one DriftEvent: a request, or why there is none."""

    request: dict[str, Any] | None
    suppressed: str | None  # "duplicate" or "cooldown" when no request


class RetrainTrigger:
    """Cooldown and de-duplication of retraining requests, per model, on event time."""

    def __init__(self, config: MonitorConfig | None = None) -> None:
        self.config = config or MonitorConfig()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._last_request: dict[str, int] = {}

    def on_drift(self, event: Mapping[str, Any], now_ms: int) -> TriggerDecision:
        """Decide on one decoded DriftEvent; ``now_ms`` is wall time for ``requested_at``."""
        event_id = str(event["event_id"])
        identity = "|".join(
            str(event[k]) for k in ("model_name", "signal", "window_start", "window_end")
        )
        if event_id in self._seen or identity in self._seen:
            return TriggerDecision(None, "duplicate")
        self._remember(event_id)
        self._remember(identity)
        model = str(event["model_name"])
        at = int(event["window_end"])
        last = self._last_request.get(model)
        if last is not None and at < last + self.config.retrain_cooldown_ms:
            return TriggerDecision(None, "cooldown")
        self._last_request[model] = at
        request = {
            "request_id": uuid.uuid4().hex,
            "model_name": model,
            "reason": "drift",
            "drift_event_ids": [event_id],
            "window_start": max(0, at - self.config.retrain_lookback_ms),
            # Up to whatever is mature when the trainer runs: the post-drift
            # days are the ones a challenger must learn from.
            "window_end": at + self.config.retrain_lookback_ms,
            "drift_start": int(event["window_start"]),
            "requested_at": int(now_ms),
            "requested_by": "monitor",
        }
        return TriggerDecision(request, None)

    def _remember(self, key: str) -> None:
        self._seen[key] = None
        while len(self._seen) > _SEEN_LIMIT:
            self._seen.popitem(last=False)
