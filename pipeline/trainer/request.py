"""What one retrain run is asked to do, from a RetrainRequest record or the command line."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.trainer.errors import BadRequestError


@dataclass(frozen=True)
class RetrainSpec:
    """One retrain run.

    ``start_ms``/``end_ms`` bound the transaction times read (``end`` exclusive,
    ``None`` unbounded); ``cutoff_ms`` is "now" for labels: only those known
    by then count. ``drift_start_ms``, when known, lets the window favour
    post-drift days.
    """

    request_id: str
    model_name: str = "fraud"
    trigger: str = "manual"
    start_ms: int | None = None
    end_ms: int | None = None
    cutoff_ms: int = field(default_factory=lambda: int(dt.datetime.now(dt.UTC).timestamp() * 1000))
    drift_start_ms: int | None = None
    requested_by: str = "cli"
    drift_event_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.request_id.strip():
            raise BadRequestError("a retrain request needs a non-empty request_id")
        if self.start_ms is not None and self.end_ms is not None and self.start_ms >= self.end_ms:
            raise BadRequestError(
                f"retrain request {self.request_id}: window [{self.start_ms}, {self.end_ms}) "
                "is empty"
            )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RetrainSpec:
        """From a decoded RetrainRequest; labels count up to when it was requested.

        A ``drift_start`` field (epoch ms, optional) is honoured when the
        record carries one.
        """
        drift = record.get("drift_start")
        return cls(
            request_id=str(record["request_id"]),
            model_name=str(record["model_name"]),
            trigger=str(record.get("reason", "")) or "unspecified",
            start_ms=int(record["window_start"]),
            end_ms=int(record["window_end"]),
            cutoff_ms=int(record["requested_at"]),
            drift_start_ms=int(drift) if drift is not None else None,
            requested_by=str(record.get("requested_by", "")),
            drift_event_ids=tuple(str(i) for i in record.get("drift_event_ids", ())),
        )

    @staticmethod
    def new_id() -> str:
        """A fresh id for a run nobody asked for by id."""
        return f"manual-{uuid.uuid4().hex[:12]}"

    def lineage(self) -> dict[str, Any]:
        """The request's part of the registered version's lineage."""
        return {
            "request_id": self.request_id,
            "trigger": self.trigger,
            "requested_by": self.requested_by,
            "drift_event_ids": list(self.drift_event_ids),
            "requested_range": {
                "start": _iso(self.start_ms),
                "end_exclusive": _iso(self.end_ms),
            },
            "label_cutoff": _iso(self.cutoff_ms),
            "drift_start": _iso(self.drift_start_ms),
        }


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")
