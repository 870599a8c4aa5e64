"""The scorer's I/O path with no work in between: the baseline of the latency benchmark.

Consumes the source topic with the scorer's consumer settings and batching
(``next_batch``), decodes each batch with the transaction codec's columnar
decode, encodes one Decision of the scorer's shape per transaction (zero
features and score, the real transaction id, ``decided_at`` = now), and
produces them, keyed like the input, with the scorer's producer settings.
No state, features, model or explanations.

Delivery is the scorer's too: at-least-once commits the input offsets about
once per commit interval, after every output produced before them is
acknowledged; exactly-once puts the outputs and the input offsets of each
commit interval in one Kafka transaction.

Prints ``assigned [...]`` once it has partitions; SIGTERM or Ctrl-C finishes
the batch, commits and leaves.

    python load_tests/latency_relay.py --bootstrap 127.0.0.1:9092 --source tx \
        --sink decisions --group relay --mode exactly-once
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import benchkit  # noqa: E402
from confluent_kafka import (  # noqa: E402
    Consumer,
    KafkaError,
    Message,
    TopicPartition,
)

from pipeline.features import FEATURE_NAMES  # noqa: E402
from pipeline.kafka.clients import make_producer  # noqa: E402
from pipeline.scorer import ScorerConfig  # noqa: E402
from pipeline.scorer.warm import settle_heap, warm_up  # noqa: E402
from pipeline.scorer.worker import next_batch  # noqa: E402
from pipeline.scoring import ServingModel  # noqa: E402
from pipeline.serde import Serde  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402

MODES = ("at-least-once", "exactly-once")


def say(message: str) -> None:
    print(message, flush=True)


class Relay:
    """One consumer, one producer; every input record becomes one Decision."""

    def __init__(
        self,
        bootstrap: str | None,
        source: str,
        sink: str,
        group: str,
        exactly_once: bool,
        batch_size: int | None = None,
        commit_interval_s: float | None = None,
    ) -> None:
        overrides = {"kafka_bootstrap_servers": bootstrap} if bootstrap else {}
        self.settings = load_settings(**overrides)
        worker_id = f"relay-{uuid.uuid4().hex[:8]}"
        self.config = ScorerConfig(
            group_id=group,
            worker_id=worker_id,
            exactly_once=exactly_once,
            batch_size=batch_size or ScorerConfig.batch_size,
            commit_interval_s=commit_interval_s,
        )
        self.source, self.sink = source, sink
        serde = Serde.from_settings(self.settings)
        self.tx_codec, self.decision_codec = serde.transactions(), serde.codec("Decision")
        self.model = ServingModel("relay", "v0", None, tuple(FEATURE_NAMES), "")  # type: ignore[arg-type]
        self.consumer = Consumer(self._consumer_config())
        self.producer = make_producer(self.settings, **self._producer_config())
        self.offsets: dict[int, int] = {}  # next offset per partition, not yet committed
        self.staged: list[TopicPartition] = []  # at-least-once: awaiting the outputs' acks
        self.staged_at = 0.0
        self.last_commit = time.monotonic()
        self.in_transaction = False
        self.delivery_errors = 0
        self.stopping = False
        self.records = self.batches = self.commits = 0
        self.assigned: set[int] = set()

    # --- the scorer's own client settings ---------------------------------------------
    def _consumer_config(self) -> dict[str, Any]:
        return self.settings.librdkafka_config(**self.config.consumer_overrides())

    def _producer_config(self) -> dict[str, Any]:
        return {**self.config.producer_overrides(), "on_delivery": self._delivered}

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.delivery_errors += 1
            say(f"delivery to {message.topic()} failed: {error}")

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        warm_up()  # the codec kernels, compiled (or loaded) before the first batch
        if self.config.exactly_once:
            self.producer.init_transactions(30)
        self.consumer.subscribe([self.source], on_assign=self._on_assign, on_revoke=self._on_revoke)
        if self.config.tune_gc:  # as the scorer does at start
            settle_heap()

    def run(self) -> None:
        consumer, config = self.consumer, self.config
        interval = config.effective_commit_interval_s
        while not self.stopping:
            messages = next_batch(consumer, config.batch_size, config.poll_timeout_s)
            if self.staged:
                self._finish_staged(interval)
            if messages:
                self._relay(messages)
            if self.staged or not self.offsets:
                continue
            if time.monotonic() - self.last_commit >= interval:
                if config.exactly_once:
                    self._commit_transaction()
                else:
                    self._stage(interval)

    def close(self) -> None:
        try:
            self._commit_all()
            self.consumer.close()
        finally:
            self.producer.flush(10)
        say(
            f"relayed {self.records} records in {self.batches} batches, "
            f"{self.commits} commits, {self.delivery_errors} delivery errors"
        )

    # --- one batch ------------------------------------------------------------------
    def _relay(self, messages: list[Message]) -> None:
        started = time.monotonic()
        kept = [m for m in messages if m.error() is None]
        if len(kept) < len(messages):
            for message in messages:
                if message.error() is not None:
                    say(f"consumer error: {message.error()}")
        if not kept:
            return
        values = [m.value() or b"" for m in kept]
        columns = self.tx_codec.decode_columns(values)
        payloads = benchkit.blank_decisions(
            self.decision_codec,
            columns,
            self.model,
            int(time.time() * 1000),
            (time.monotonic() - started) * 1000.0,
        )
        if self.config.exactly_once and not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction = True
        produce, sink = self.producer.produce, self.sink
        for index, payload in zip(columns.indices.tolist(), payloads, strict=True):
            key = kept[index].key()
            while True:
                try:
                    produce(sink, payload, key)
                    break
                except BufferError:
                    self.producer.poll(0.05)
        self.producer.poll(0)
        for message in kept:
            partition, offset = message.partition(), message.offset()
            if partition is not None and offset is not None:
                self.offsets[partition] = max(self.offsets.get(partition, 0), offset + 1)
        self.records += len(columns)
        self.batches += 1

    # --- commits --------------------------------------------------------------------
    def _take_offsets(self) -> list[TopicPartition]:
        offsets = [TopicPartition(self.source, p, o) for p, o in self.offsets.items()]
        self.offsets.clear()
        return offsets

    def _stage(self, interval: float) -> None:
        """At-least-once: note the offsets reached; commit them once acknowledged."""
        self.staged = self._take_offsets()
        self.staged_at = self.last_commit = time.monotonic()
        self._finish_staged(interval)

    def _finish_staged(self, interval: float) -> None:
        """Commit the staged offsets once no output is unacknowledged, or after a
        flush once they have waited a commit interval."""
        self.producer.poll(0)
        if len(self.producer) and time.monotonic() - self.staged_at < interval:
            return
        self._ensure_delivered()
        self.consumer.commit(offsets=self.staged, asynchronous=True)
        self.staged = []
        self.commits += 1

    def _ensure_delivered(self) -> None:
        remaining = self.producer.flush(30)
        if remaining or self.delivery_errors:
            raise RuntimeError(
                f"outputs not acknowledged ({remaining} pending, "
                f"{self.delivery_errors} failed); offsets not committed"
            )

    def _commit_transaction(self) -> None:
        """Exactly-once: the open transaction's outputs and input offsets, together."""
        offsets = self._take_offsets()
        if self.in_transaction:
            if offsets:
                self.producer.send_offsets_to_transaction(
                    offsets, self.consumer.consumer_group_metadata(), 30
                )
            self.producer.commit_transaction(60)
            self.in_transaction = False
            self.commits += 1
        self.last_commit = time.monotonic()

    def _commit_all(self) -> None:
        """Everything relayed so far, committed (before leaving or losing partitions)."""
        if self.config.exactly_once:
            self._commit_transaction()
            return
        offsets = {(tp.topic, tp.partition): tp for tp in [*self.staged, *self._take_offsets()]}
        self.staged = []
        self._ensure_delivered()
        if offsets:
            self.consumer.commit(offsets=list(offsets.values()), asynchronous=False)
            self.commits += 1
        self.last_commit = time.monotonic()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            self.assigned.update(tp.partition for tp in partitions)
            say(f"assigned {sorted(tp.partition for tp in partitions)}")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit_all()
        self.assigned.difference_update(tp.partition for tp in partitions)
        say(f"revoked {sorted(tp.partition for tp in partitions)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bootstrap", default=None, help="[default: FRAUD_KAFKA_BOOTSTRAP_SERVERS/settings]"
    )
    parser.add_argument("--source", required=True, help="transactions topic")
    parser.add_argument("--sink", required=True, help="decisions topic")
    parser.add_argument("--group", required=True, help="consumer group")
    parser.add_argument("--mode", choices=MODES, default="at-least-once")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"[default: the scorer's, {ScorerConfig.batch_size}]",
    )
    parser.add_argument(
        "--commit-interval-ms",
        type=int,
        default=None,
        help="[default: the scorer's: 1000 at-least-once, 50 exactly-once]",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    relay = Relay(
        args.bootstrap,
        args.source,
        args.sink,
        args.group,
        exactly_once=args.mode == "exactly-once",
        batch_size=args.batch_size,
        commit_interval_s=args.commit_interval_ms / 1000.0 if args.commit_interval_ms else None,
    )
    signals = {"count": 0}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            raise SystemExit(130)
        relay.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    relay.start()
    say(f"relay {args.mode}: {args.source} -> {args.sink}, group {args.group}")
    try:
        relay.run()
    finally:
        relay.close()


if __name__ == "__main__":
    main()
