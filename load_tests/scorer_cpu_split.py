"""The scorer's CPU per event against the I/O ceiling's, on the same batches, interleaved.

Throughput on this shared machine swings by a factor of two between tries, which
hides changes of a few percent. This measures CPU time of the calling thread
instead, batch by batch: every batch of pre-read records goes through the
scorer's batch step (decode, features, model, reasons, outputs, monitoring) and
then through the I/O ceiling's work (decode, encode a Decision of the same
shape, produce), so both see the same machine at the same moment. Consuming is
left out of both (the records are read once beforehand); producing is real.

    python load_tests/scorer_cpu_split.py --json
    python load_tests/scorer_cpu_split.py --events 300000 --passes 3

Each pass starts a fresh scorer (empty card state, fresh group and changelog),
as the throughput benchmark's tries do. The figure to compare between code
versions is ``ceiling_to_scorer``: the ceiling's CPU per event over the
scorer's (its inverse is how many times the ceiling's work the scorer does).
This reaches into the worker's batch step (``ScorerWorker._process``): it is a
diagnostic for the hot path, not a way to run a scorer.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import benchkit
from benchkit import log

from pipeline.scorer.config import ScorerConfig


def read_back(settings, topic: str, events: int) -> list:
    """The topic's records, partitions interleaved in chunks as a backlog is read."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        settings.librdkafka_config(
            **{
                "group.id": benchkit.unique("read"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
    )
    consumer.subscribe([topic])
    messages: list = []
    deadline = time.monotonic() + 120
    while len(messages) < events and time.monotonic() < deadline:
        messages += [m for m in consumer.consume(5000, 1.0) if m.error() is None]
    consumer.close()
    by_partition: dict[int, list] = {}
    for message in messages:
        by_partition.setdefault(message.partition(), []).append(message)
    ordered: list = []
    chunk = 333  # about what one fetch brings of a partition
    for start in range(0, max(map(len, by_partition.values())), chunk):
        for partition in sorted(by_partition):
            ordered += by_partition[partition][start : start + chunk]
    return ordered


def one_pass(settings, messages: list, batch_size: int, sink: str) -> dict:
    from pipeline.metrics import ScorerMetrics
    from pipeline.scorer import ScorerWorker

    changelog = benchkit.unique("cl")
    benchkit.create_topics(settings, {changelog: 6})
    settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"card_state_changelog": changelog})}
    )
    config = ScorerConfig(
        group_id=benchkit.unique("scorer"),
        batch_size=batch_size,
        exactly_once=False,
        worker_id=benchkit.unique("w"),
    )
    worker = ScorerWorker(settings, config, metrics=ScorerMetrics())
    worker.start()
    worker.run(max_events=1, idle_timeout_s=60)  # joined, assigned, state restored
    producer = benchkit.ceiling_producer(settings)
    model = worker.engine.model
    scorer_s = ceiling_s = 0.0
    for start in range(0, len(messages), batch_size):
        batch = messages[start : start + batch_size]
        began = time.thread_time()
        worker._process(batch)
        worker._poll_labels()
        worker._emit_windows(worker._stats.due())
        between = time.thread_time()
        # the I/O ceiling's work on the same batch (load_tests/scorer_throughput.py)
        payloads, keys, _, _ = benchkit.ceiling_batch(
            batch, worker.tx_codec, worker.decision_codec, model
        )
        benchkit.produce_all(producer, sink, payloads, keys)
        producer.poll(0)
        ended = time.thread_time()
        scorer_s += between - began
        ceiling_s += ended - between
    producer.flush(60)
    worker.close()
    n = len(messages)
    return {
        "scorer_cpu_us_per_event": round(scorer_s / n * 1e6, 3),
        "ceiling_cpu_us_per_event": round(ceiling_s / n * 1e6, 3),
        "ceiling_to_scorer": round(ceiling_s / scorer_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=ScorerConfig.batch_size,
        help="[default: the scorer's, %(default)s]",
    )
    parser.add_argument("--passes", type=int, default=3, help="fresh scorers, one after another")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with benchkit.broker() as bootstrap, tempfile.TemporaryDirectory() as registry_dir:
        days = max(25, int(args.events / 9500) + 23)  # as the throughput benchmark
        log(f"simulating {days} days")
        frame = benchkit.simulated(days)
        version = benchkit.register_champion(frame, Path(registry_dir))
        history = frame
        frame = frame.iloc[-args.events :].reset_index(drop=True)
        settings = benchkit.isolated_topics(bootstrap, 6, registry_dir=registry_dir)
        sink = benchkit.unique("ceiling")
        benchkit.create_topics(settings, {sink: 6})
        from pipeline.terminal import backfill

        log("publishing terminal histories (backfill)")
        backfill(settings, history)
        log(f"producing {len(frame)} transactions")
        benchkit.produce_transactions(settings, settings.topics.transactions, frame)
        messages = read_back(settings, settings.topics.transactions, len(frame))
        passes = []
        for number in range(args.passes):
            log(f"pass {number + 1}")
            passes.append(one_pass(settings, messages, args.batch_size, sink))
            log(json.dumps(passes[-1]))
    ratios = sorted(p["ceiling_to_scorer"] for p in passes)
    report = {
        "ceiling_to_scorer_median": ratios[len(ratios) // 2],
        "passes": passes,
        "events": len(messages),
        "batch_size": args.batch_size,
        "model": version,
        "cores": os.cpu_count(),
    }
    benchkit.print_report(report, args.json)


if __name__ == "__main__":
    main()
