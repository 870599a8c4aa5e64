"""The two ends of the latency benchmark: a paced transaction producer and a decisions probe.

Latency of one transaction = the time its decision was read from ``decisions``
(read_committed) minus the time the transaction was handed to the producer.
The send time travels inside the transaction id,
``id = send_us * 1024 + sequence % 1024``, so the probe needs no map shared
with the producer process and reads only the first Avro field of a Decision
(a zigzag varint right after the 5-byte Confluent header).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

HEADER_SIZE = 5
SEQUENCE_SLOTS = 1024


def zigzag_varint(value: int) -> bytes:
    """Avro encoding of a long."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def first_long(payload: bytes) -> int:
    """The first field (a long) of a Confluent-framed Avro record."""
    result = shift = 0
    pos = HEADER_SIZE
    while True:
        byte = payload[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1)


def transaction_id(send_us: int, sequence: int) -> int:
    return send_us * SEQUENCE_SLOTS + sequence % SEQUENCE_SLOTS


def send_seconds(transaction_ids: np.ndarray) -> np.ndarray:
    """Send times (epoch seconds) carried by transaction ids."""
    return (transaction_ids // SEQUENCE_SLOTS).astype(np.float64) / 1e6


# --- producer side -------------------------------------------------------------------
@dataclass(frozen=True)
class PaceRequest:
    """Send ``rate`` transactions per second for ``seconds`` to ``topic``."""

    topic: str
    rate: float
    seconds: float
    start_index: int
    step_s: float = 0.001


@dataclass(frozen=True)
class PaceReport:
    """What the paced producer did: per message send time and lateness against schedule."""

    started_s: float
    send_us: np.ndarray
    schedule_lag_ms: np.ndarray
    delivery_errors: int
    unflushed: int


class PacedSender:
    """Sends pre-encoded transaction bodies at a fixed rate, in small time steps.

    ``rests`` are Transaction payloads without header and transaction id; the id
    (carrying the send time) is encoded at send time and the Kafka CreateTime is
    set to the same instant.
    """

    def __init__(
        self, config: dict[str, Any], header: bytes, rests: list[bytes], keys: list[bytes]
    ) -> None:
        from confluent_kafka import Producer

        self.errors = 0
        self.producer = Producer(
            {
                **config,
                "delivery.report.only.error": True,
                "on_delivery": self._delivered,
            }
        )
        self.header, self.rests, self.keys = header, rests, keys

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self.errors += 1

    def send(self, request: PaceRequest) -> PaceReport:
        total = round(request.rate * request.seconds)
        send_us = np.zeros(total, np.int64)
        lag = np.zeros(total, np.float64)
        producer, produce = self.producer, self.producer.produce
        header, rests, keys, topic = self.header, self.rests, self.keys, request.topic
        size, period, rate = len(rests), 1.0 / request.rate, request.rate
        errors_before = self.errors
        started = time.time()
        sent = 0
        step = 0
        while sent < total:
            due = min(total, int((time.time() - started) * rate) + 1)
            while sent < due:
                now = time.time()
                us = int(now * 1e6)
                sequence = request.start_index + sent
                row = sequence % size
                payload = header + zigzag_varint(transaction_id(us, sequence)) + rests[row]
                try:
                    produce(topic, payload, keys[row], timestamp=us // 1000)
                except BufferError:
                    producer.poll(0.001)
                    continue
                send_us[sent] = us
                lag[sent] = now - (started + sent * period)
                sent += 1
            producer.poll(0)
            step += 1
            pause = started + step * request.step_s - time.time()
            if pause > 0:
                time.sleep(pause)
        unflushed = producer.flush(30)
        return PaceReport(
            started_s=started,
            send_us=send_us,
            schedule_lag_ms=lag * 1000.0,
            delivery_errors=self.errors - errors_before,
            unflushed=unflushed,
        )


def producer_main(
    conn: Connection, config: dict[str, Any], header: bytes, rests: list[bytes], keys: list[bytes]
) -> None:
    """Entry point of the producer process: serve PaceRequests until ``None``."""
    sender = PacedSender(config, header, rests, keys)
    conn.send("ready")
    while True:
        request = conn.recv()
        if request is None:
            break
        conn.send(sender.send(request))
    sender.producer.flush(10)


# --- consumer side ----------------------------------------------------------------------
class DecisionProbe:
    """Reads every decision (read_committed) and notes when each was read.

    Waits for the first message with ``poll`` (returns as soon as one is there),
    then drains what is already queued without waiting, so the read time is not
    inflated by batching in the probe itself.
    """

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        partitions: int,
        decode: Any = None,
        sample_every: int = 50,
    ) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.consumer = Consumer(
            {
                **config,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.min.bytes": 1,
                "fetch.wait.max.ms": 10,
            }
        )
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self._ids: list[np.ndarray] = []
        self._read: list[np.ndarray] = []
        self.first_payload: bytes | None = None
        self._decode, self._sample_every, self._seen = decode, sample_every, 0
        self.samples: list[tuple[int, float, float, float]] = []

    def poll(self, timeout_s: float) -> int:
        first = self.consumer.poll(timeout_s)
        if first is None:
            return 0
        messages = [first, *self.consumer.consume(100_000, 0)]
        read_s = time.time()
        values: list[bytes] = [v for m in messages if m.error() is None and (v := m.value())]
        if not values:
            return 0
        ids = [first_long(value) for value in values]
        if self.first_payload is None:
            self.first_payload = values[0]
        self._ids.append(np.asarray(ids, np.int64))
        self._read.append(np.full(len(ids), read_s))
        if self._decode is not None:
            self._sample(values, read_s)
        return len(ids)

    def _sample(self, values: list[bytes], read_s: float) -> None:
        """Full decode of every n-th decision: (id, decided_at, processing, read) in ms."""
        for value in values:
            self._seen += 1
            if self._seen % self._sample_every:
                continue
            record = self._decode(value)
            self.samples.append(
                (
                    int(record["transaction_id"]),
                    float(record["decided_at"]),
                    float(record["processing_ms"]),
                    read_s * 1000.0,
                )
            )

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.poll(min(0.05, max(deadline - time.monotonic(), 0.0)))

    def first_reads(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Distinct transaction ids, the time each was first read, and the duplicates count."""
        if not self._ids:
            return np.zeros(0, np.int64), np.zeros(0), 0
        ids = np.concatenate(self._ids)
        read = np.concatenate(self._read)
        unique, first = np.unique(ids, return_index=True)  # reads are in time order
        return unique, read[first], len(ids) - len(unique)

    def close(self) -> None:
        self.consumer.close()


def stage_breakdown(
    samples: list[tuple[int, float, float, float]], id_from: int, id_to: int
) -> dict[str, Any]:
    """Where the time goes, from sampled decisions sent in ``[id_from, id_to)``.

    to_decided: send to the scorer's decision timestamp (transport, consumer
    queue, batching, processing); processing: consume to decision inside the
    scorer; decided_to_read: produce of the decision to the probe reading it
    (linger, acks, transaction commit, fetch). Millisecond clocks: +-1 ms.
    """
    rows = np.asarray([s for s in samples if id_from <= s[0] < id_to], np.float64)
    if len(rows) == 0:
        return {}
    send_ms = send_seconds(rows[:, 0].astype(np.int64)) * 1000.0
    stages = {
        "to_decided": rows[:, 1] - send_ms,
        "processing": rows[:, 2],
        "decided_to_read": rows[:, 3] - rows[:, 1],
    }
    out: dict[str, Any] = {"samples": len(rows)}
    for name, values in stages.items():
        out[f"{name}_p50_ms"] = round(float(np.percentile(values, 50)), 2)
        out[f"{name}_p99_ms"] = round(float(np.percentile(values, 99)), 2)
    return out


def latency_row(
    offered: float,
    report: PaceReport,
    warmup_s: float,
    ids: np.ndarray,
    read_s: np.ndarray,
    samples: list[tuple[int, float, float, float]] | None = None,
) -> dict[str, Any]:
    """Figures of one offered rate over the sends after the warm-up."""
    # Whole microseconds throughout, as the ids carry them: the sends counted and
    # the decisions matched to them then cover exactly the same instants.
    from_us = int((report.started_s + warmup_s) * 1e6)
    to_us = int(report.send_us[-1]) if len(report.send_us) else from_us
    measured = report.send_us >= from_us
    measure_from, measure_to = from_us / 1e6, to_us / 1e6
    window = max(measure_to - measure_from, 1e-9)
    sent_ids_from = from_us * SEQUENCE_SLOTS
    sent_ids_to = (to_us + 1) * SEQUENCE_SLOTS
    mine = (ids >= sent_ids_from) & (ids < sent_ids_to)
    latency_ms = (read_s[mine] - send_seconds(ids[mine])) * 1000.0
    read_in_window = (read_s >= measure_from) & (read_s <= measure_to)
    n_measured = int(measured.sum())

    def pct(values: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(values, q)), 2) if len(values) else None

    lag = report.schedule_lag_ms[measured]
    return {
        "offered_per_s": offered,
        "sent_per_s": round(n_measured / window, 1),
        "achieved_per_s": round(float(read_in_window.sum()) / window, 1),
        "p50_ms": pct(latency_ms, 50),
        "p90_ms": pct(latency_ms, 90),
        "p99_ms": pct(latency_ms, 99),
        "p999_ms": pct(latency_ms, 99.9),
        "max_ms": round(float(latency_ms.max()), 2) if len(latency_ms) else None,
        "measured": n_measured,
        "decided": int(mine.sum()),
        "missing": n_measured - int(mine.sum()),
        "window_s": round(window, 2),
        "send_lag_p99_ms": pct(lag, 99),
        "send_lag_max_ms": round(float(lag.max()), 2) if len(lag) else None,
        "delivery_errors": report.delivery_errors,
        "stages": stage_breakdown(samples or [], sent_ids_from, sent_ids_to),
    }
