"""Scorer throughput against a real broker, with its baselines measured in the same run.

Measures, on the same pre-produced Avro input:
  (a) the scorer (full features, the registered champion, Avro in and out);
  (b) the raw I/O ceiling: consume + decode + encode + produce, no features or model;
  (c) a minimal faust-streaming agent doing the scorer's work with the same core functions.

    python load_tests/scorer_throughput.py --json
    python load_tests/scorer_throughput.py --events 100000 --modes at-least-once,exactly-once

FRAUD_BENCH_PROFILE=FILE writes a cProfile of each scorer try to FILE (the
last try's wins); read it with `python -m pstats FILE`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchkit
from benchkit import log

from pipeline.scorer.config import ScorerConfig


def io_ceiling(settings, source: str, sink: str, events: int, batch_size: int) -> float:
    """Consume, decode, encode a Decision of the same shape, produce, commit: no work."""
    from confluent_kafka import Consumer, TopicPartition

    from pipeline.features import FEATURE_NAMES
    from pipeline.scoring import ServingModel
    from pipeline.scoring.window_stats import partition_maxima
    from pipeline.serde import Serde

    serde = Serde.from_settings(settings)
    tx_codec, decision_codec = serde.transactions(), serde.codec("Decision")
    model = ServingModel("fraud", "v0", None, tuple(FEATURE_NAMES), "")  # type: ignore[arg-type]
    consumer = Consumer(
        settings.librdkafka_config(
            **{
                "group.id": benchkit.unique("ceiling"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
                "queued.min.messages": 20000,
                "fetch.queue.backoff.ms": ScorerConfig().fetch_queue_backoff_ms,
            }
        )
    )
    producer = benchkit.ceiling_producer(settings)  # the scorer's output settings
    consumer.subscribe([source])
    # Offsets are committed once the outputs before them are acknowledged, as
    # often as an at-least-once scorer commits.
    interval = ScorerConfig(exactly_once=False).effective_commit_interval_s
    done, first, last_commit = 0, 0.0, time.monotonic()
    offsets: dict[int, int] = {}
    while done < events:
        messages = consumer.consume(batch_size, 0.01)
        if not messages:
            continue
        if not first:
            first = time.monotonic()
        payloads, keys, partitions, ends = benchkit.ceiling_batch(
            messages, tx_codec, decision_codec, model
        )
        benchkit.produce_all(producer, sink, payloads, keys)
        producer.poll(0)
        seen, last = partition_maxima(partitions, ends)  # as the scorer notes its offsets
        for partition, offset in zip(seen.tolist(), last.tolist(), strict=True):
            offsets[partition] = offset + 1
        done += len(partitions)
        if time.monotonic() - last_commit > interval:
            producer.flush(30)
            consumer.commit(
                offsets=[TopicPartition(source, p, o) for p, o in offsets.items()],
                asynchronous=False,
            )
            last_commit = time.monotonic()
    producer.flush(30)
    elapsed = time.monotonic() - first
    consumer.close()
    return done / elapsed


def scorer_run(
    settings, events: int, batch_size: int, exactly_once: bool, monitoring: bool = True
) -> dict:
    """One scorer from scratch: a fresh group and a fresh (empty) state changelog."""
    from pipeline.metrics import ScorerMetrics

    changelog = benchkit.unique("cl")
    partitions = len(benchkit.topic_partitions(settings, settings.topics.transactions))
    benchkit.create_topics(settings, {changelog: partitions})
    settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"card_state_changelog": changelog})}
    )
    from pipeline.scorer import ScorerWorker

    worker = ScorerWorker(
        settings,
        ScorerConfig(
            group_id=benchkit.unique("scorer"),
            batch_size=batch_size,
            exactly_once=exactly_once,
            worker_id=benchkit.unique("w"),
            outcomes=monitoring,
            monitor_stats=monitoring,
        ),
        metrics=ScorerMetrics(),
    )
    worker.start()
    if os.environ.get("FRAUD_BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        summary = profiler.runcall(worker.run, max_events=events, idle_timeout_s=60)
        profiler.dump_stats(os.environ["FRAUD_BENCH_PROFILE"])
    else:
        summary = worker.run(max_events=events, idle_timeout_s=60)
    worker.close()
    return {
        "events_per_s": round(summary.events_per_s),
        "decided": summary.decided,
        "alerts": summary.alerts,
        "outcomes": summary.outcomes,
        "dead_lettered": summary.dead_lettered,
    }


def produce_labels(settings, frame) -> None:
    """Every transaction's label, keyed by card, known a label delay after it."""
    from confluent_kafka import Producer

    from pipeline.data.io import timestamps_ms
    from pipeline.features.spec import DAY_MS
    from pipeline.serde import Serde
    from pipeline.serde.fast_encode import encode_labels, schema_id_for

    codec = Serde.from_settings(settings).codec("Label")
    payloads = encode_labels(
        transaction_id=frame["transaction_id"].to_numpy(),
        card_id=frame["card_id"].to_numpy(),
        is_fraud=frame["is_fraud"].to_numpy(),
        label_timestamp=timestamps_ms(frame) + settings.label_delay_days * DAY_MS,
        schema_id=schema_id_for(codec),
        source="simulator",
    )
    producer = Producer(
        settings.librdkafka_config(
            **{"linger.ms": 5, "batch.size": 1_000_000, "partitioner": "murmur2_random"}
        )
    )  # the transactions' partitioner: labels are co-partitioned by card
    for key, payload in zip(frame["card_id"].tolist(), payloads, strict=True):
        while True:
            try:
                producer.produce(settings.topics.labels, payload, str(key).encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def faust_run(settings, source: str, sink: str, events: int) -> float:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result = Path(handle.name)
    result.unlink()
    here = Path(__file__).resolve().parent
    command = [
        sys.executable,
        str(here / "faust_scorer.py"),
        "--bootstrap",
        settings.kafka_bootstrap_servers,
        "--source",
        source,
        "--sink",
        sink,
        "--registry",
        str(settings.registry_dir),
        "--events",
        str(events),
        "--result",
        str(result),
    ]
    env = dict(os.environ, PYTHONPATH=str(benchkit.ROOT))
    # Faust keeps a data directory under the working directory: a scratch one.
    with tempfile.TemporaryDirectory(prefix="faust-bench-") as scratch:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=scratch,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + max(120.0, events / 2000.0)
        while time.monotonic() < deadline and not result.exists() and process.poll() is None:
            time.sleep(0.5)
        if process.poll() is None:
            process.kill()
        process.wait()
    if not result.exists():
        tail = (process.stderr.read() if process.stderr else "")[-2000:]
        raise RuntimeError(f"the Faust agent did not finish: {tail}")
    data = json.loads(result.read_text())
    result.unlink()
    return data["events"] / data["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300_000, help="transactions to score")
    parser.add_argument(
        "--faust-events", type=int, default=60_000, help="transactions for the (slow) Faust agent"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=ScorerConfig.batch_size,
        help="[default: the scorer's, %(default)s]",
    )
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--modes", default="at-least-once", help="comma-separated: at-least-once, exactly-once"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="alternate ceiling and scorer runs this many times; best of each",
    )
    parser.add_argument("--no-faust", action="store_true")
    parser.add_argument(
        "--monitoring-cost",
        action="store_true",
        help="also run at-least-once without the label join and window stats",
    )
    parser.add_argument(
        "--labels-cost",
        action="store_true",
        help="also run at-least-once with every transaction's label in the labels topic "
        "(label time = transaction time + the label delay), joined into outcomes",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with benchkit.broker() as bootstrap, tempfile.TemporaryDirectory() as registry_dir:
        days = max(25, int(args.events / 9500) + 23)
        log(f"simulating {days} days")
        frame = benchkit.simulated(days)
        version = benchkit.register_champion(frame, Path(registry_dir))
        history = frame
        frame = frame.iloc[-args.events :].reset_index(drop=True)
        settings = benchkit.isolated_topics(bootstrap, args.partitions, registry_dir=registry_dir)
        extra = {"ceil": benchkit.unique("ceiling"), "fdec": benchkit.unique("faust-decisions")}
        benchkit.create_topics(settings, {name: args.partitions for name in extra.values()})
        names = {"tx": settings.topics.transactions, **extra}
        from pipeline.terminal import backfill

        log("publishing terminal histories (backfill)")
        backfill(settings, history)
        log(f"producing {len(frame)} transactions")
        benchkit.produce_transactions(settings, names["tx"], frame)

        # The ceiling's process as a scorer worker's at start: kernels loaded
        # (about 0.4 s) and the set-up's objects (the simulation, the produced
        # frame) frozen out of the collector's scans. Otherwise the ceiling's
        # first try pays both, 0.4-0.5 s of full collections, and runs at about
        # two thirds of its later tries.
        from pipeline.scorer.warm import settle_heap, warm_up

        warm_up()
        settle_heap()
        # Ceiling and scorer alternate, best of --repeat each: a burst of load
        # from elsewhere on the machine then hurts one try, not the ratio.
        ceilings: list[float] = []
        results: dict[str, dict] = {}
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        for attempt in range(args.repeat):
            log(f"I/O ceiling (try {attempt + 1})")
            ceilings.append(
                io_ceiling(settings, names["tx"], names["ceil"], len(frame), args.batch_size)
            )
            for mode in modes:
                log(f"scorer, {mode} (try {attempt + 1})")
                run = scorer_run(
                    settings, len(frame), args.batch_size, exactly_once=(mode == "exactly-once")
                )
                best = results.get(mode)
                run["tries_events_per_s"] = [
                    *(best or {}).get("tries_events_per_s", []),
                    run["events_per_s"],
                ]
                if best is None or run["events_per_s"] > best["events_per_s"]:
                    results[mode] = run
                else:
                    best["tries_events_per_s"] = run["tries_events_per_s"]
        ceiling = max(ceilings)
        if args.monitoring_cost:
            log("scorer, at-least-once, no monitoring outputs")
            results["at-least-once-no-monitoring"] = scorer_run(
                settings, len(frame), args.batch_size, exactly_once=False, monitoring=False
            )
        if args.labels_cost:
            log(f"producing {len(frame)} labels")
            produce_labels(settings, frame)
            log("scorer, at-least-once, labels flowing")
            results["at-least-once-with-labels"] = scorer_run(
                settings, len(frame), args.batch_size, exactly_once=False
            )
        faust = None
        if not args.no_faust:
            log("faust agent")
            faust = faust_run(
                settings, names["tx"], names["fdec"], min(args.faust_events, len(frame))
            )

    main_mode = next(iter(results))
    events_per_s = results[main_mode]["events_per_s"]
    report = {
        "events_per_s": events_per_s,
        "io_ceiling_events_per_s": round(ceiling),
        "io_ceiling_tries_events_per_s": [round(c) for c in ceilings],
        "faust_events_per_s": round(faust) if faust else None,
        "ratio_to_io_ceiling": round(events_per_s / ceiling, 3),
        "ratio_to_faust": round(events_per_s / faust, 2) if faust else None,
        "cores": os.cpu_count(),
        "events": len(frame),
        "batch_size": args.batch_size,
        "partitions": args.partitions,
        "model": version,
        "modes": results,
    }
    if "exactly-once" in results and "at-least-once" in results:
        report["exactly_once_ratio"] = round(
            results["exactly-once"]["events_per_s"] / results["at-least-once"]["events_per_s"], 3
        )
    benchkit.print_report(report, args.json)


if __name__ == "__main__":
    main()
