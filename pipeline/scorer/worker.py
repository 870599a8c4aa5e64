"""One scorer worker: consume a batch, decide every transaction, produce, commit.

Per batch: decode (Avro or JSON; bad records to the dead-letter topic), update
the per-card state of each source partition and build the feature matrix, join
terminal features, score with one ``inplace_predict``, decide, explain flagged
rows, produce one Decision per transaction and an Alert per flagged one.

Delivery: at-least-once commits input offsets only after every output of the
batches before them is acknowledged. Exactly-once wraps outputs and offsets in
one Kafka transaction per commit interval.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from pipeline.errors import FraudError
from pipeline.features import FEATURE_NAMES, TerminalPrimitives, describe
from pipeline.features.spec import DAY_MS
from pipeline.kafka import make_admin, make_producer
from pipeline.metrics import ScorerMetrics
from pipeline.policy import ACTIONS, DecisionPolicy
from pipeline.registry import ModelRegistry, RegistryError
from pipeline.scorer.changelog import ChangelogBuffer, Rows
from pipeline.scorer.config import ScorerConfig
from pipeline.scorer.labels import LabelJoiner
from pipeline.scorer.outputs import (
    BatchRows,
    encode_alerts,
    encode_decisions,
    encode_outcomes,
    encode_reasons,
    encode_window_stats,
)
from pipeline.scorer.restore import restore_state
from pipeline.scorer.state import PartitionedCardState
from pipeline.scorer.warm import settle_heap, warm_up
from pipeline.scoring import ScoringEngine, ServingModel
from pipeline.scoring.window_stats import WindowStats, partition_maxima
from pipeline.serde import Serde, dlq_headers
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class ScorerError(FraudError):
    """The scorer cannot start or go on (not bad input: that is dead-lettered)."""


class TerminalSource(Protocol):
    """Where delayed terminal aggregates come from (a global table)."""

    def poll(self) -> None: ...

    def primitives(
        self, terminal_id: np.ndarray, ts_ms: np.ndarray
    ) -> TerminalPrimitives | None: ...


@dataclass
class RunSummary:
    """What one run of the loop did."""

    consumed: int = 0
    decided: int = 0
    alerts: int = 0
    dead_lettered: int = 0
    batches: int = 0
    model_swaps: int = 0
    model_refusals: int = 0
    outcomes: int = 0
    seconds: float = 0.0
    first_batch_at: float = 0.0
    last_batch_at: float = 0.0

    @property
    def events_per_s(self) -> float:
        """Decisions per second between the first and the last batch."""
        span = self.last_batch_at - self.first_batch_at
        return self.decided / span if span > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def next_batch(consumer: Consumer, size: int, timeout_s: float) -> list[Message]:
    """Everything already fetched, up to ``size`` records; when nothing is, wait
    at most ``timeout_s`` for the first record and take it with whatever came
    alongside. ``consume(size, timeout)`` alone waits out the whole timeout
    whenever fewer than ``size`` records are queued, which below full load adds
    that wait to every decision (at 5k events/s: p50 33 ms with it, 21 ms
    without)."""
    messages = consumer.consume(size, 0)
    if messages:
        return messages
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(size - 1, 0)] if size > 1 else [first]


def owned_records(
    messages: list[Message], partitions: np.ndarray, offsets: np.ndarray, owned: set[int]
) -> tuple[list[Message], np.ndarray, np.ndarray]:
    """The records of a batch (with their partitions and offsets) whose partition
    is in ``owned``.

    A consume call can hand over records fetched before a revocation it served:
    their partition is another worker's now, which decides them from the offset
    committed at the revocation. Deciding them here too would commit a second
    decision for each.
    """
    mine = np.isin(partitions, np.fromiter(owned, np.int64, len(owned)))
    kept = [message for message, keep in zip(messages, mine.tolist(), strict=True) if keep]
    return kept, partitions[mine], offsets[mine]


def seek_consumed(consumer: Consumer, committed: list[TopicPartition]) -> list[int]:
    """Seek back to its committed offset each partition read from since it was
    assigned (or last sought); returns those partitions.

    A partition nothing was read from needs no seek: its fetcher starts, or
    already started, at the committed offset. Seeking it could also fail: until
    its fetcher has started (a partition assigned in the consume call just
    served), librdkafka refuses a seek with "Erroneous state", and that
    exception would end the worker.
    """
    read = {tp.partition for tp in consumer.position(committed) if tp.offset >= 0}
    sought = []
    for tp in committed:
        if tp.partition in read:
            target = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            consumer.seek(TopicPartition(tp.topic, tp.partition, target))
            sought.append(tp.partition)
    return sought


class ScorerWorker:
    """A member of the scorer consumer group."""

    def __init__(
        self,
        settings: Settings,
        config: ScorerConfig | None = None,
        *,
        registry: ModelRegistry | None = None,
        metrics: ScorerMetrics | None = None,
        terminal_source: TerminalSource | None = None,
        serde: Serde | None = None,
    ) -> None:
        self.settings = settings
        self.config = config or ScorerConfig()
        self.registry = registry or ModelRegistry(settings.registry_dir)
        self.metrics = metrics or ScorerMetrics()
        self.terminal_source = terminal_source
        self.serde = serde or Serde.from_settings(settings)
        self.tx_codec = self.serde.transactions()
        self.decision_codec = self.serde.codec("Decision")
        self.alert_codec = self.serde.codec("Alert")
        self.control_codec = self.serde.codec("ModelControl")
        self.policy = DecisionPolicy(
            settings.policy.review_threshold, settings.policy.decline_threshold
        )
        self.topics = settings.topics
        self.summary = RunSummary()
        self.state = PartitionedCardState()
        self.engine: ScoringEngine | None = None
        self._control_generation = -1
        self._next_offsets: dict[int, int] = {}
        # At-least-once: offsets waiting for their outputs' acks (see _stage).
        self._staged: list[TopicPartition] = []
        self._staged_at = 0.0
        self._uncommitted_batches = 0
        self._last_commit = time.monotonic()
        self._in_transaction = False
        self._delivery_failed: KafkaError | None = None
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._control: Consumer | None = None
        self._stop = threading.Event()
        self._changelog = ChangelogBuffer()
        self._assigned_at = 0.0
        self._commit_started = 0.0
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="txn-commit")
        self._committing: Future[Any] | None = None
        # The largest dead-letter value the producer can send, leaving room for
        # the key and headers.
        producer_limit = int(settings.kafka_config.get("message.max.bytes", 1_000_000))
        self._dlq_limit = self.config.dlq_max_value_bytes or producer_limit - 16_384
        self._labels: LabelJoiner | None = None
        self._stats = WindowStats(
            self.config.stats_window_ms,
            self.config.stats_grace_ms,
            len(FEATURE_NAMES),
            idle_ms=self.config.stats_idle_ms,
        )
        self.outcome_codec = self.serde.codec("Outcome")
        self.stats_codec = self.serde.codec("MonitorStats")

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Load the model, then join the group."""
        self.engine = ScoringEngine(
            self._load_model(self.config.model_ref),
            self.policy,
            describe,
            self.settings.policy.max_reasons,
        )
        model = self.engine.model
        self.metrics.model_info.info({"name": model.name, "version": model.version})
        log.info("scorer %s serving %s:%s", self.config.worker_id, model.name, model.version)
        warm_up()
        self._check_topics()
        if self.terminal_source is None and self.config.terminal_features:
            self.terminal_source = self._open_terminal_table()
        self._producer = make_producer(self.settings, **self._producer_config())
        if self.config.exactly_once:
            threading.Thread(
                target=self._watch_commits, name="commit-watchdog", daemon=True
            ).start()
            try:
                self._producer.init_transactions(30)
            except KafkaException as exc:
                raise ScorerError(f"cannot initialise transactions: {exc}") from exc
        if self.config.outcomes:
            self._labels = LabelJoiner(
                self.settings,
                self.serde.labels(),
                self.decision_codec,
                retention_ms=(self.settings.label_delay_days + 1) * DAY_MS,
                delay_ms=self.settings.label_delay_days * DAY_MS,
                unread_idle_s=self.config.stats_idle_ms / 1000.0,
            )
        self._consumer = Consumer(self._consumer_config())
        self._consumer.subscribe(
            [self.topics.transactions],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._control = Consumer(
            self.settings.librdkafka_config(
                **{
                    "group.id": f"{self.config.group_id}-control-{self.config.worker_id}",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                }
            )
        )
        self._control.assign([TopicPartition(self.topics.model_control, 0, OFFSET_BEGINNING)])
        if self.config.tune_gc:
            settle_heap()  # the model, terminal table and modules live as long as the worker

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and leave (thread/signal safe)."""
        self._stop.set()

    def run(
        self,
        *,
        max_events: int | None = None,
        idle_timeout_s: float | None = None,
        until: Callable[[], bool] | None = None,
    ) -> RunSummary:
        """Process until stopped, ``max_events`` decided, or idle for ``idle_timeout_s``."""
        if self._consumer is None:
            self.start()
        assert self._consumer is not None
        began = time.monotonic()
        last_data = began
        try:
            while not self._stop.is_set():
                self._poll_control()
                if self.terminal_source is not None:
                    self.terminal_source.poll()
                messages = next_batch(
                    self._consumer, self.config.batch_size, self.config.poll_timeout_s
                )
                if self._staged:
                    # The consume wait is when the last outputs get their acks.
                    self._finish_staged()
                if messages:
                    last_data = time.monotonic()
                    if not self.summary.first_batch_at:
                        self.summary.first_batch_at = last_data
                    self._process(messages)
                    self.summary.last_batch_at = time.monotonic()
                self._poll_labels()
                self._emit_windows(self._stats.due())
                if self._assigned_at > last_data:
                    last_data = self._assigned_at
                self._maybe_commit()
                handled = self.summary.decided + self.summary.dead_lettered
                if max_events is not None and handled >= max_events:
                    break
                if until is not None and until():
                    break
                if idle_timeout_s is not None and time.monotonic() - last_data > idle_timeout_s:
                    break
            self._commit()
        finally:
            self.summary.seconds += time.monotonic() - began
        return self.summary

    def close(self) -> None:
        """Commit what is done, leave the group, release clients."""
        try:
            if self._consumer is not None:
                if self._producer is not None and self.config.monitor_stats:
                    self._begin_transaction()
                    self._emit_windows(self._stats.drain())
                self._commit()
                self._consumer.close()
        finally:
            if self._labels is not None:
                self._labels.close()
                self._labels = None
            closer = getattr(self.terminal_source, "close", None)
            if callable(closer):
                closer()
            if self._producer is not None:
                self._producer.flush(10)
            if self._control is not None:
                self._control.close()
            self._committer.shutdown(wait=True)  # nothing is in flight after _commit
            self._consumer = self._producer = self._control = None

    def _check_topics(self) -> None:
        """Fail early, naming the fix, when a topic the worker needs is missing."""
        needed = [
            self.topics.transactions,
            self.topics.decisions,
            self.topics.alerts,
            self.topics.dlq,
            self.topics.model_control,
        ]
        if self.config.changelog:
            needed.append(self.topics.card_state_changelog)
        if self.config.outcomes:
            needed.extend([self.topics.labels, self.topics.outcomes])
        if self.config.monitor_stats:
            needed.append(self.topics.monitor_stats)
        admin = make_admin(self.settings)
        try:
            existing = admin.list_topics(timeout=15).topics
        except KafkaException as exc:
            raise ScorerError(
                f"no answer from Kafka at {self.settings.kafka_bootstrap_servers}: {exc}"
            ) from exc
        missing = [name for name in needed if name not in existing]
        for _ in range(10):  # topics created a moment ago may take a moment to show
            if not missing:
                break
            time.sleep(0.3)
            existing = admin.list_topics(timeout=15).topics
            missing = [name for name in needed if name not in existing]
        if missing:
            raise ScorerError(f"missing topic(s) {', '.join(missing)}; run `fraud topics create`")
        if self.config.changelog:
            source = len(existing[self.topics.transactions].partitions)
            changelog = len(existing[self.topics.card_state_changelog].partitions)
            if changelog < source:
                raise ScorerError(
                    f"{self.topics.card_state_changelog} has {changelog} partitions but "
                    f"{self.topics.transactions} has {source}; they must match"
                )

    def _open_terminal_table(self) -> TerminalSource:
        """Load the global terminal table whole before the first batch."""
        from pipeline.terminal import TerminalFeaturesError, TerminalTable

        table = TerminalTable(self.settings)
        try:
            table.start()
        except TerminalFeaturesError as exc:
            raise ScorerError(
                f"cannot read terminal features ({exc}); run `fraud topics create` and "
                "`fraud terminal-features`, or start the scorer with --no-terminal-features"
            ) from exc
        if not table.wait_until_caught_up(self.config.terminal_catch_up_timeout_s):
            log.warning(
                "terminal table not caught up after %.0fs; going on",
                self.config.terminal_catch_up_timeout_s,
            )
        log.info("terminal table loaded: %d terminals", len(table))
        return table

    # --- the batch ---------------------------------------------------------------
    def _process(self, messages: list[Message]) -> None:
        started = time.monotonic()
        producer = self._producer
        assert producer is not None and self.engine is not None
        kept = messages
        errors = list(map(Message.error, messages))
        if errors.count(None) != len(errors):
            if not self._begin_transaction():
                return
            kept = [message for message in messages if self._usable(message)]
            if not kept:
                return
        n_in = len(kept)
        partitions = np.fromiter(map(Message.partition, kept), np.int64, n_in)
        offsets = np.fromiter(map(Message.offset, kept), np.int64, n_in)
        seen, last = partition_maxima(partitions, offsets)
        if not self.state.partitions.issuperset(seen.tolist()):
            left = n_in
            kept, partitions, offsets = owned_records(
                kept, partitions, offsets, self.state.partitions
            )
            n_in = len(kept)
            self.metrics.disowned.inc(left - n_in)
            log.info(
                "left %d records of revoked partitions %s to their new owner",
                left - n_in,
                sorted(set(seen.tolist()) - self.state.partitions),
            )
            if not kept:
                return
            seen, last = partition_maxima(partitions, offsets)
        raw = list(map(Message.value, kept))
        # A tombstone (no value) is decoded as empty bytes, hence dead-lettered.
        values = [v or b"" for v in raw] if None in raw else cast(list[bytes], raw)
        keys = list(map(Message.key, kept))
        next_offsets = self._next_offsets
        for partition, offset in zip(seen.tolist(), last.tolist(), strict=True):
            next_offsets[partition] = max(next_offsets.get(partition, 0), offset + 1)
        self.summary.consumed += n_in
        self.metrics.events_in.inc(n_in)
        self.metrics.batch_size.observe(n_in)

        columns = self.tx_codec.decode_columns(values)
        if len(columns) == 0:
            if not self._begin_transaction():
                return
            for bad in columns.errors:
                self._dead_letter(kept[bad.index], bad.reason, bad.message, "decode")
            self._uncommitted_batches += 1
            return
        indices = columns.indices
        rows = BatchRows(
            transaction_id=columns.transaction_id,
            timestamp=columns.timestamp,
            card_id=columns.card_id,
            terminal_id=columns.terminal_id,
            amount=columns.amount,
            partition=partitions[indices],
            offset=offsets[indices],
        )
        features = self._features(rows)
        scored = self.engine.score(features)
        decided_at = int(time.time() * 1000)
        processing_ms = (time.monotonic() - started) * 1000.0
        model = self.engine.model
        reasons = encode_reasons(scored)  # once for the Decisions and the Alerts
        decisions = encode_decisions(
            self.decision_codec,
            rows,
            features,
            scored,
            model,
            decided_at,
            processing_ms,
            reasons=reasons,
        )
        # Everything above ran while the previous transaction's commit was in flight.
        if not self._begin_transaction():
            return  # that commit failed: the partitions were rewound, this batch comes again
        for bad in columns.errors:
            self._dead_letter(kept[bad.index], bad.reason, bad.message, "decode")
        ok_keys = keys if len(indices) == n_in else [keys[i] for i in indices.tolist()]
        self._produce_many(self.topics.decisions, ok_keys, decisions)
        alerts = scored.flagged.tolist()
        if alerts:
            payloads = encode_alerts(
                self.alert_codec, rows, scored, model, decided_at, reasons=reasons
            )
            self._produce_many(self.topics.alerts, [ok_keys[row] for row in alerts], payloads)
        producer.poll(0)
        # The outputs are on their way (linger) while the monitoring takes its share.
        self._track(rows, scored.scores, scored.actions, features, decided_at, processing_ms)

        n = len(indices)
        self.summary.decided += n
        self.summary.alerts += len(alerts)
        self.summary.batches += 1
        self._uncommitted_batches += 1
        self.metrics.events_out.inc(n)
        self.metrics.alerts.inc(len(alerts))
        counts = np.bincount(scored.actions, minlength=len(ACTIONS))
        for code, count in enumerate(counts.tolist()):
            if count:
                self.metrics.decisions.labels(action=ACTIONS[code]).inc(count)
        # State rows go out in chunks rather than all at the commit, so a
        # long commit interval does not stall the loop for its whole worth.
        if len(self._changelog) >= self.config.changelog_chunk:
            self._write_changelog()
        self.metrics.processing_seconds.observe(time.monotonic() - started)
        now_ms = time.time() * 1000.0
        sampled = indices[:: self.config.latency_sample_every].tolist()
        produced_ms = np.fromiter(
            (kept[i].timestamp()[1] for i in sampled), np.float64, len(sampled)
        )
        produced_ms = produced_ms[produced_ms > 0]  # no timestamp: nothing to measure
        self.metrics.end_to_end_seconds.observe_many(np.maximum(now_ms - produced_ms, 0.0) / 1000.0)

    def _track(
        self,
        rows: BatchRows,
        scores: np.ndarray,
        actions: np.ndarray,
        features: np.ndarray,
        decided_at: int,
        processing_ms: float,
    ) -> None:
        """Feed the label join and the window statistics."""
        if self.config.monitor_stats:
            self._stats.add(
                rows.timestamp, scores, actions, features, processing_ms, rows.partition
            )
        labels = self._labels
        if labels is None:
            return
        assert self.engine is not None
        model = self.engine.model
        # One gather in partition order, then a slice (a view) per partition.
        order = np.argsort(rows.partition, kind="stable")
        partition = rows.partition[order]
        cuts = np.flatnonzero(partition[1:] != partition[:-1]) + 1
        starts = [0, *cuts.tolist()]
        ends = [*cuts.tolist(), len(order)]
        transaction_id, card_id = rows.transaction_id[order], rows.card_id[order]
        timestamp, scores, actions = rows.timestamp[order], scores[order], actions[order]
        for lo, hi in zip(starts, ends, strict=True):
            part = int(partition[lo])
            pending = labels.pending.get(part)
            if pending is not None:
                pending.add(
                    transaction_id[lo:hi],
                    card_id[lo:hi],
                    timestamp[lo:hi],
                    scores[lo:hi],
                    actions[lo:hi],
                    model.name,
                    model.version,
                    decided_at,
                )
            labels.observe(part, int(timestamp[lo:hi].max()))

    def _poll_labels(self) -> None:
        labels = self._labels
        if labels is None or not labels.pending:
            return
        result = labels.poll()
        if not result.outcomes and not result.rejected:
            return
        self._begin_transaction()
        for message, reason, detail in result.rejected:
            self._dead_letter(message, reason, detail, "join")
        outcomes = result.outcomes
        if outcomes is not None and len(outcomes):
            payloads = encode_outcomes(self.outcome_codec, outcomes)
            names = [name.encode() for name, _ in outcomes.models]
            keys = [names[i] for i in outcomes.model_index.tolist()]
            self._produce_many(self.topics.outcomes, keys, payloads)
            self.summary.outcomes += len(payloads)
        self._uncommitted_batches += 1

    def _emit_windows(self, windows: list[Any]) -> None:
        if not windows or self.engine is None:
            return
        self._begin_transaction()
        model = self.engine.model
        payloads = encode_window_stats(self.stats_codec, windows, self.config.worker_id, model)
        self._produce_many(
            self.topics.monitor_stats, [model.name.encode()] * len(payloads), payloads
        )
        self._uncommitted_batches += 1

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.fatal():
            # e.g. a static member fenced by another with the same id: this
            # consumer will never fetch again, so stop (a restart is safe).
            raise ScorerError(f"fatal consumer error: {error}")
        if error.code() != KafkaError._PARTITION_EOF:
            self.metrics.errors.labels(stage="consume").inc()
            log.warning("consume error: %s", error)
        return False

    def _produce_many(self, topic: str, keys: list[bytes | None], payloads: list[bytes]) -> None:
        """Produce a batch; when the local queue is full, serve it and retry."""
        producer = self._producer
        assert producer is not None
        produce = producer.produce
        for payload, key in zip(payloads, keys, strict=True):
            try:
                produce(topic, payload, key)
            except BufferError:
                while True:
                    producer.poll(0.05)
                    try:
                        produce(topic, payload, key)
                        break
                    except BufferError:
                        continue

    def _features(self, rows: BatchRows) -> np.ndarray:
        terminal = None
        if self.terminal_source is not None:
            terminal = self.terminal_source.primitives(rows.terminal_id, rows.timestamp)
        matrix = self.state.features(
            rows.card_id, rows.timestamp, rows.amount, rows.partition, terminal
        )
        if self.config.changelog:
            self._changelog.append(
                rows.partition, Rows(rows.offset, rows.card_id, rows.timestamp, rows.amount)
            )
        self.metrics.state_cards.set(len(self.state))
        return matrix

    def _dead_letter(self, message: Message, reason: str, detail: str, stage: str) -> None:
        headers = dlq_headers(
            reason,
            detail,
            stage=stage,
            topic=message.topic() or "",
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            failed_at_ms=int(time.time() * 1000),
            worker=self.config.worker_id,
            source_timestamp_ms=message.timestamp()[1],
        )
        value = message.value()
        limit = self._dlq_limit
        if value is not None and len(value) > limit:
            # Kept whole it could exceed the dead-letter topic's limit and stop the
            # worker; the head of the record and its full size are what an
            # operator needs.
            headers.append(("fraud.dlq.truncated_from", str(len(value)).encode()))
            value = value[:limit]
        self._produce(self.topics.dlq, message.key(), value, headers)
        self.summary.dead_lettered += 1
        self.metrics.dead_letters.labels(reason=reason).inc()
        if stage != "join":
            self._stats.dead_letter()

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any = None,
        partition: int | None = None,
    ) -> None:
        """Produce one record; when the local queue is full, serve it and retry."""
        producer = self._producer
        assert producer is not None
        while True:
            try:
                if partition is None:
                    producer.produce(topic, value, key, headers=headers)
                else:
                    producer.produce(topic, value, key, headers=headers, partition=partition)
                return
            except BufferError:
                producer.poll(0.05)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None and error.code() in (
            KafkaError._PURGE_QUEUE,
            KafkaError._PURGE_INFLIGHT,
        ):
            return  # an aborted transaction's outputs: redone after the rewind
        if error is not None:
            self.metrics.errors.labels(stage="produce").inc()
            log.error("delivery to %s failed: %s", message.topic(), error)
            self._delivery_failed = error

    # --- commits -------------------------------------------------------------
    def _maybe_commit(self) -> None:
        if self._staged:  # settled after the next consume (see run)
            return
        due = time.monotonic() - self._last_commit >= self.config.effective_commit_interval_s
        if self._uncommitted_batches and (
            due or self._uncommitted_batches >= self.config.commit_max_batches
        ):
            if self.config.exactly_once:
                self._commit(sync=False)
            else:
                self._stage()

    def _stage(self) -> None:
        """At-least-once, without stalling the loop: write the changelog and note the
        offsets reached; they are committed once every output produced so far is
        acknowledged (seen between batches), or after a blocking flush if that
        takes longer than a commit interval."""
        self._write_changelog()
        self._staged = self._offsets_reached()
        self._staged_at = time.monotonic()
        self._uncommitted_batches = 0
        self._last_commit = self._staged_at
        self._finish_staged()

    def _finish_staged(self) -> None:
        producer, consumer = self._producer, self._consumer
        assert producer is not None and consumer is not None
        producer.poll(0)
        started = time.monotonic()
        if len(producer) and started - self._staged_at < self.config.effective_commit_interval_s:
            return
        self._ensure_delivered(producer)
        if self._staged:
            consumer.commit(offsets=self._staged, asynchronous=True)
        self._staged = []
        self.metrics.commit_seconds.observe(time.monotonic() - started)

    def _offsets_reached(self) -> list[TopicPartition]:
        """Input and label offsets reached since the last commit (and forget them)."""
        offsets = [
            TopicPartition(self.topics.transactions, partition, offset)
            for partition, offset in self._next_offsets.items()
        ]
        self._next_offsets.clear()
        if self._labels is not None:
            offsets.extend(self._labels.committable())
            self._labels.committed()
        return offsets

    def _ensure_delivered(self, producer: Producer) -> None:
        remaining = producer.flush(30)
        failed = self._delivery_failed
        if remaining or failed is not None:
            raise ScorerError(
                f"outputs not acknowledged ({remaining} pending, error: {failed}); "
                "offsets not committed, restart to resume from the last commit"
            )

    def _begin_transaction(self) -> bool:
        """Exactly-once: open a transaction for the outputs about to be produced.

        Waits for a commit still in flight first; ``False`` when that commit
        failed, in which case the partitions were rewound to their committed
        offsets (what the caller was about to produce will be computed again).
        """
        if not self.config.exactly_once:
            return True
        settled = self._settle_commit()
        if not self._in_transaction:
            assert self._producer is not None
            self._producer.begin_transaction()
            self._in_transaction = True
        return settled

    def _settle_commit(self) -> bool:
        """Wait for the transaction commit in flight, if any; ``False`` if it failed."""
        pending = self._committing
        if pending is None:
            return True
        self._committing = None
        error = pending.result()
        self._in_transaction = False
        if error is not None:
            self._after_failed_commit(error)
            return False
        return True

    def _commit_transaction(self, offsets: list[TopicPartition], group: Any) -> Any:
        """Commit the open transaction (with ``offsets``); the error, or ``None``."""
        producer = self._producer
        assert producer is not None
        self._commit_started = started = time.monotonic()
        try:
            if offsets:
                producer.send_offsets_to_transaction(offsets, group, 30)
            producer.commit_transaction(60)
        except KafkaException as exc:
            return exc
        finally:
            self._commit_started = 0.0
            self.metrics.commit_seconds.observe(time.monotonic() - started)
        return None

    def _commit(self, sync: bool = True) -> None:
        """Make everything processed so far durable: state changelog, outputs, offsets.

        Exactly-once: the changelog frames, outputs and input offsets commit in
        one transaction; a transaction that must abort rewinds the partitions to
        their committed offsets and restores their state from the changelog.
        At-least-once: wait for every output and changelog record to be
        acknowledged, then commit the offsets. In steady state the loop does not
        wait (:meth:`_stage`) and commits asynchronously: a lost async commit only
        means a few records decided again after a crash, never a record skipped.
        """
        consumer, producer = self._consumer, self._producer
        if consumer is None or producer is None:
            return
        if self.config.exactly_once and not self._settle_commit():
            return  # rewound to the last commit: nothing processed is left to commit
        started = time.monotonic()
        self._write_changelog()
        # Staged offsets first: a later offset of the same partition wins.
        offsets = list(
            {
                (tp.topic, tp.partition): tp for tp in [*self._staged, *self._offsets_reached()]
            }.values()
        )
        self._staged = []
        if self.config.exactly_once:
            if self._in_transaction:
                group = consumer.consumer_group_metadata()
                if sync:
                    error = self._commit_transaction(offsets, group)
                    self._in_transaction = False
                    if error is not None:
                        self._after_failed_commit(error)
                        return
                else:
                    # The loop goes on computing the next batch while the broker
                    # commits; it waits for the outcome before producing again.
                    self._committing = self._committer.submit(
                        self._commit_transaction, offsets, group
                    )
        else:
            self._ensure_delivered(producer)
            if offsets and sync:
                consumer.commit(offsets=offsets, asynchronous=False)
            elif offsets:
                consumer.commit(offsets=offsets, asynchronous=True)
            self.metrics.commit_seconds.observe(time.monotonic() - started)
        self._uncommitted_batches = 0
        self._last_commit = time.monotonic()

    def _write_changelog(self) -> None:
        """Produce the state rows taken in since the last write, one frame per partition."""
        if not self.config.changelog:
            return
        topic = self.topics.card_state_changelog
        for partition, key, value in self._changelog.drain():
            if partition in self.state.partitions:
                self._produce(topic, key, value, partition=partition)

    def _watch_commits(self) -> None:
        """Exit the process if a transaction commit hangs past its own timeouts.

        librdkafka can block in send_offsets_to_transaction after a broker is
        lost; exiting is safe in exactly-once mode (the restarted worker's
        init_transactions aborts what was open) and lets a supervisor restart it.
        """
        limit = self.config.commit_watchdog_s
        while not self._stop.wait(1.0):
            started = self._commit_started
            if started and time.monotonic() - started > limit:
                log.critical("transaction commit stuck for over %.0fs; exiting", limit)
                logging.shutdown()
                os._exit(70)

    def _after_failed_commit(self, exc: KafkaException) -> None:
        error = exc.args[0] if exc.args else None
        producer = self._producer
        assert producer is not None
        if isinstance(error, KafkaError) and error.txn_requires_abort():
            log.warning("transaction aborted (%s); rewinding to the last commit", error)
            self.metrics.errors.labels(stage="commit").inc()
            producer.abort_transaction(30)
            self._rewind()
            return
        raise ScorerError(f"cannot commit the transaction: {exc}") from exc

    def _rewind(self, exclude: set[int] | None = None) -> None:
        """Seek the assigned partitions back to their committed offsets; restore state."""
        consumer = self._consumer
        assert consumer is not None
        assigned = [
            tp for tp in consumer.assignment() if not exclude or tp.partition not in exclude
        ]
        if not assigned:
            return
        committed = consumer.committed(assigned, timeout=30)
        seek_consumed(consumer, committed)
        self._next_offsets.clear()
        self._uncommitted_batches = 0
        self._restore({tp.partition: tp.offset for tp in committed})

    # --- rebalancing and state ------------------------------------------------------
    def _restore(self, committed: dict[int, int]) -> None:
        """Rebuild the card state of partitions from the changelog (the truth).

        ``committed`` maps each partition to the group's committed input offset
        (negative when none): the state holds the rows of the inputs before it.
        """
        partitions = list(committed)
        self._changelog.forget(set(partitions))
        self.state.drop(partitions)
        if not self.config.changelog:
            for partition in partitions:
                self.state.assign(partition)
            return
        started = time.monotonic()
        restored = restore_state(self.settings, self.topics.card_state_changelog, partitions)
        cards = 0
        for partition, restorer in restored.items():
            ids, ts, amounts = restorer.histories(max(committed[partition], 0))
            self.state.load(partition, ids, ts, amounts)
            cards += len(ids)
        log.info(
            "restored %d cards of partitions %s in %.2fs",
            cards,
            sorted(partitions),
            time.monotonic() - started,
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            self._assigned_at = time.monotonic()
            return
        wanted = [TopicPartition(self.topics.transactions, tp.partition) for tp in partitions]
        if self._labels is not None:
            wanted += [TopicPartition(self.topics.labels, tp.partition) for tp in partitions]
        committed = consumer.committed(wanted, timeout=30)
        self._restore(
            {tp.partition: tp.offset for tp in committed if tp.topic == self.topics.transactions}
        )
        if self._labels is not None:
            self._labels.assign(
                {tp.partition: tp.offset for tp in committed if tp.topic == self.topics.labels}
            )
            for tp in partitions:
                rebuilt = self._labels.rebuild(tp.partition)
                if rebuilt:
                    log.info("partition %d: %d decisions await labels", tp.partition, rebuilt)
        self._stats.assign(tp.partition for tp in partitions)
        self._assigned_at = time.monotonic()
        self.metrics.assigned_partitions.set(len(self.state.partitions))
        log.info("assigned %s", sorted(tp.partition for tp in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit()
        if self._labels is not None:
            self._labels.revoke([tp.partition for tp in partitions])
        self.state.drop([tp.partition for tp in partitions])
        self._stats.forget([tp.partition for tp in partitions])
        self._changelog.forget({tp.partition for tp in partitions})
        self.metrics.assigned_partitions.set(len(self.state.partitions))
        log.info("revoked %s", sorted(tp.partition for tp in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._labels is not None:
            self._labels.revoke([tp.partition for tp in partitions])
        self.state.drop([tp.partition for tp in partitions])
        self._stats.forget([tp.partition for tp in partitions])
        lost = {tp.partition for tp in partitions}
        for partition in lost:
            self._next_offsets.pop(partition, None)
        self._staged = [
            tp
            for tp in self._staged
            if tp.partition not in lost
            or tp.topic not in (self.topics.transactions, self.topics.labels)
        ]
        self._changelog.forget({tp.partition for tp in partitions})
        if self.config.exactly_once:
            self._settle_commit()
        if self.config.exactly_once and self._in_transaction and self._producer is not None:
            # Outputs of lost partitions must not commit; the others are redone.
            self._producer.abort_transaction(30)
            self._in_transaction = False
            self._rewind(exclude=lost)
        self.metrics.assigned_partitions.set(len(self.state.partitions))
        log.warning("lost %s", sorted(tp.partition for tp in partitions))

    # --- live model swap -------------------------------------------------------------
    def _load_model(self, ref: str) -> ServingModel:
        try:
            loaded = self.registry.load(ref, expected_features=FEATURE_NAMES)
        except RegistryError as exc:
            raise ScorerError(f"cannot serve model {ref!r}: {exc}") from exc
        return ServingModel.from_loaded(loaded)

    def _poll_control(self) -> None:
        control = self._control
        if control is None or self.engine is None:
            return
        message = control.poll(0)
        while message is not None:
            value = message.value()
            if message.error() is None and value:
                self._apply_control(value)
            message = control.poll(0)

    def _apply_control(self, payload: bytes) -> None:
        assert self.engine is not None
        try:
            record = self.control_codec.decode(payload)
        except FraudError as exc:
            self._refuse("bad_control_record", str(exc))
            return
        if record["model_name"] != self.engine.model.name:
            return
        generation = int(record.get("generation", 0))
        if generation and generation <= self._control_generation:
            return
        self._control_generation = generation
        version = str(record["champion_version"])
        if version == self.engine.model.version:
            return
        try:
            model = self._load_model(version)
        except ScorerError as exc:
            self._refuse("load_failed", str(exc))
            return
        self._commit()  # decisions before the swap are committed under the old model
        self.engine = self.engine.with_model(model)
        self.summary.model_swaps += 1
        self.metrics.model_swaps.inc()
        self.metrics.model_info.info({"name": model.name, "version": model.version})
        log.info("switched to model %s:%s", model.name, model.version)

    def _refuse(self, reason: str, detail: str) -> None:
        self.summary.model_refusals += 1
        self.metrics.model_refusals.labels(reason=reason).inc()
        log.error(
            "model change refused (%s): %s; still serving %s",
            reason,
            detail,
            self.engine.model.version if self.engine else "nothing",
        )

    # --- client configuration ---------------------------------------------------------
    def _consumer_config(self) -> dict[str, Any]:
        return self.settings.librdkafka_config(
            **self.config.consumer_overrides(),
            **{"statistics.interval.ms": 5000, "stats_cb": self._on_stats},
        )

    def _producer_config(self) -> dict[str, Any]:
        return {**self.config.producer_overrides(), "on_delivery": self._delivered}

    def _on_stats(self, raw: str) -> None:
        try:
            stats = json.loads(raw)
            partitions = stats["topics"][self.topics.transactions]["partitions"]
        except (KeyError, ValueError, TypeError):
            return
        for name, info in partitions.items():
            lag = info.get("consumer_lag", -1)
            if name != "-1" and isinstance(lag, int) and lag >= 0:
                self.metrics.consumer_lag.labels(partition=name).set(lag)
