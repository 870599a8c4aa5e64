"""The retrain job: read served features and mature labels, train, judge, register, announce.

One run turns a :class:`RetrainSpec` into a challenger: the decisions and
labels topics are read as a bounded snapshot, the window is chosen, a booster
is trained on the training days, both it and the champion are scored on the
holdout, and the challenger is registered (alias ``challenger``) with its
lineage and both models' metrics, then announced on model-control. The
champion never changes here: promotion is a person's call
(``fraud models promote``).

Runs are idempotent per request id: a request whose id is already in some
version's lineage is skipped, so a redelivered request (crash before the
commit) registers nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError

from pipeline.control import announce
from pipeline.features import FEATURE_SET_VERSION
from pipeline.features.spec import DAY_MS
from pipeline.kafka import make_consumer
from pipeline.model.errors import ModelError
from pipeline.model.params import DEFAULT_PARAMS, TrainParams
from pipeline.model.training import train_booster
from pipeline.registry import ModelRegistry, ModelVersion
from pipeline.serde import DecodeError, Serde
from pipeline.settings import Settings
from pipeline.trainer.compare import Comparison, compare
from pipeline.trainer.dataset import (
    AssemblyCounts,
    DecisionCollector,
    LabelCollector,
    TrainingSet,
    assemble,
)
from pipeline.trainer.errors import BadRequestError, FeatureSetMismatchError, TrainerError
from pipeline.trainer.reader import read_topics
from pipeline.trainer.request import RetrainSpec
from pipeline.trainer.window import WindowPolicy, Windows, choose_windows

log = logging.getLogger(__name__)

TRAINED_BY = "fraud retrain"


@dataclass(frozen=True)
class RetrainOutcome:
    """What one run did."""

    request_id: str
    status: str  # registered, dry-run, skipped, failed
    version: ModelVersion | None = None
    windows: Windows | None = None
    comparison: Comparison | None = None
    counts: AssemblyCounts | None = None
    announced: dict[str, Any] | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        """A summary for ``--json`` and logs."""
        payload: dict[str, Any] = {"request_id": self.request_id, "status": self.status}
        if self.version is not None:
            payload["version"] = self.version.ref
        if self.windows is not None:
            payload["train"] = self.windows.train.to_json()
            payload["holdout"] = self.windows.holdout.to_json()
            payload["post_drift"] = self.windows.post_drift
            payload["window_note"] = self.windows.note
        if self.comparison is not None:
            payload["challenger_metrics"] = self.comparison.challenger
            payload["champion_version"] = self.comparison.champion_version
            payload["champion_metrics"] = self.comparison.champion
        if self.counts is not None:
            payload["rows"] = self.counts.to_json()
        if self.message:
            payload["message"] = self.message
        return payload


@dataclass
class RetrainJob:
    """Runs retrain requests against one cluster and registry."""

    settings: Settings
    policy: WindowPolicy = field(default_factory=WindowPolicy)
    params: TrainParams = DEFAULT_PARAMS
    progress: bool = False
    announce_changes: bool = True
    dry_run: bool = False
    serde: Serde | None = None
    _serde: Serde = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._serde = self.serde or Serde.from_settings(self.settings)

    def registry(self, name: str) -> ModelRegistry:
        return ModelRegistry(self.settings.registry_dir, name)

    # --- one run -------------------------------------------------------------

    def handled_by(self, spec: RetrainSpec) -> ModelVersion | None:
        """The version already registered for this request, if any."""
        for version in reversed(self.registry(spec.model_name).list_versions()):
            if version.lineage.get("request_id") == spec.request_id:
                return version
        return None

    def run(self, spec: RetrainSpec) -> RetrainOutcome:
        """Train, judge and (unless ``dry_run``) register and announce one challenger.

        Raises :class:`NotEnoughDataError` when the window cannot train or
        judge a model; nothing is registered then.
        """
        done = self.handled_by(spec)
        if done is not None:
            return RetrainOutcome(
                spec.request_id, "skipped", version=done, message=f"already handled by {done.ref}"
            )
        data = self.load(spec)
        windows = choose_windows(data.days, data.is_fraud, self.policy, spec.drift_start_ms)
        days = data.days
        train, holdout = (
            data.select(windows.train.mask(days)),
            data.select(windows.holdout.mask(days)),
        )
        log.info(
            "retrain %s: %d training rows (%s), %d holdout rows (%s); %s",
            spec.request_id,
            len(train),
            windows.train,
            len(holdout),
            windows.holdout,
            windows.note,
        )
        booster = train_booster(train.features, train.is_fraud, train.feature_names, self.params)
        registry = self.registry(spec.model_name)
        comparison = compare(booster, registry, holdout)
        if self.dry_run:
            return RetrainOutcome(
                spec.request_id, "dry-run", None, windows, comparison, data.counts
            )
        version = registry.register(
            booster,
            features=list(train.feature_names),
            params=self.params.to_dict(),
            data_range=(windows.train.first_date.isoformat(), windows.train.last_date.isoformat()),
            metrics=_metrics(comparison),
            lineage=_lineage(spec, windows, comparison, train, holdout, data.counts),
            feature_set_version=FEATURE_SET_VERSION,
            alias="challenger",
        )
        announced = self._announce(registry, version, spec)
        return RetrainOutcome(
            spec.request_id, "registered", version, windows, comparison, data.counts, announced
        )

    def load(self, spec: RetrainSpec) -> TrainingSet:
        """Read the snapshot of decisions and labels and assemble the training set."""
        topics = self.settings.topics
        decisions = DecisionCollector(spec.start_ms, spec.end_ms)
        labels = LabelCollector(spec.cutoff_ms, spec.start_ms)
        decision_codec = self._serde.codec("Decision")
        label_codec = self._serde.codec("Label")
        bad = {topics.decisions: 0, topics.labels: 0}

        def handle(topic: str, value: bytes) -> None:
            try:
                if topic == topics.decisions:
                    decisions.add(decision_codec.decode(value))
                else:
                    labels.add(label_codec.decode(value))
            except DecodeError:
                bad[topic] += 1

        read_topics(
            self.settings, [topics.decisions, topics.labels], handle, progress=self.progress
        )
        for topic, count in bad.items():
            if count:
                log.warning("skipped %d undecodable records on %s", count, topic)
        if decisions.stale and not len(decisions):
            raise FeatureSetMismatchError(
                f"all {decisions.stale} decisions in range were served with another feature set "
                f"than {decisions.feature_set_version!r}; score with the current model first"
            )
        return assemble(
            decisions.table(),
            labels.table(),
            cutoff_ms=spec.cutoff_ms,
            label_delay_ms=self.settings.label_delay_days * DAY_MS,
        )

    def _announce(
        self, registry: ModelRegistry, version: ModelVersion, spec: RetrainSpec
    ) -> dict[str, Any] | None:
        if not self.announce_changes:
            return None
        state = registry.aliases()
        if state.champion is None:
            log.warning(
                "no champion for %s: challenger %s not announced", registry.name, version.ref
            )
            return None
        reason = f"retrain {spec.request_id} ({spec.trigger}): challenger {version.label}"
        return announce(self.settings, registry.name, state, reason)

    # --- the loop --------------------------------------------------------------

    def serve(
        self,
        group_id: str = "fraud-retrain",
        *,
        max_requests: int | None = None,
        idle_timeout_s: float | None = None,
        on_outcome: Callable[[RetrainOutcome], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[RetrainOutcome]:
        """Consume retrain requests in ``group_id`` and run each; commit after each.

        A request that cannot be served (malformed, too little data) is logged
        and committed, so it does not block the ones behind it; a failure of
        the cluster or the registry propagates and the request is redelivered.
        Stops after ``max_requests`` requests or ``idle_timeout_s`` seconds
        without one.
        """
        codec = self._serde.codec("RetrainRequest")
        consumer = make_consumer(self.settings, group_id, **{"isolation.level": "read_committed"})
        consumer.subscribe([self.settings.topics.retrain_requests])
        outcomes: list[RetrainOutcome] = []
        last_seen = time.monotonic()
        try:
            while not should_stop():
                if max_requests is not None and len(outcomes) >= max_requests:
                    break
                if idle_timeout_s is not None and time.monotonic() - last_seen > idle_timeout_s:
                    break
                message = consumer.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise TrainerError(f"retrain-requests consumer failed: {error.str()}")
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("retrain-requests consumer: %s", error.str())
                    continue
                last_seen = time.monotonic()
                outcome = self._serve_one(codec.decode, message.value() or b"")
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
                consumer.commit(message=message, asynchronous=False)
                last_seen = time.monotonic()
        finally:
            consumer.close()
        return outcomes

    def _serve_one(self, decode: Callable[[bytes], dict[str, Any]], value: bytes) -> RetrainOutcome:
        try:
            spec = RetrainSpec.from_record(decode(value))
        except (DecodeError, BadRequestError, KeyError, TypeError, ValueError) as exc:
            log.error("skipping a malformed retrain request: %s", exc)
            return RetrainOutcome("?", "failed", message=f"malformed request: {exc}")
        try:
            outcome = self.run(spec)
        except (TrainerError, ModelError) as exc:  # this request's data, not the system
            log.error("retrain %s failed: %s", spec.request_id, exc)
            return RetrainOutcome(spec.request_id, "failed", message=str(exc))
        log.info("retrain %s: %s", spec.request_id, outcome.status)
        return outcome


def _metrics(comparison: Comparison) -> dict[str, Any]:
    metrics: dict[str, Any] = dict(comparison.challenger)
    metrics["champion"] = comparison.champion
    metrics["champion_version"] = comparison.champion_version
    return metrics


def _lineage(
    spec: RetrainSpec,
    windows: Windows,
    comparison: Comparison,
    train: TrainingSet,
    holdout: TrainingSet,
    counts: AssemblyCounts,
) -> dict[str, Any]:
    return {
        **spec.lineage(),
        "trained_by": TRAINED_BY,
        "source": "served features from decisions, labels joined by transaction_id",
        "data_range": windows.train.to_json(),
        "holdout": windows.holdout.to_json(),
        "post_drift": windows.post_drift,
        "window_note": windows.note,
        "champion_version": comparison.champion_version,
        "champion_note": comparison.champion_note,
        "train_rows": len(train),
        "train_frauds": int(train.is_fraud.sum()),
        "holdout_rows": len(holdout),
        "holdout_frauds": int(holdout.is_fraud.sum()),
        "assembly": counts.to_json(),
    }
