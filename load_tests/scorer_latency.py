"""End-to-end scorer latency at fixed offered loads, against a real broker.

One scorer (``fraud score``, in its own process) consumes; a paced producer (its
own process) sends Avro transactions at each offered rate in 1 ms steps, with
the Kafka CreateTime set to the send time; a probe in this process reads
``decisions`` with read_committed. Latency = time the decision was read minus
the time its transaction was sent (the send time is carried in the transaction
id). The first ``--warmup`` seconds of every rate are excluded.

The relay (``latency_relay.py``, also in its own process) is the baseline: the
scorer's I/O path and nothing else. It consumes with the scorer's consumer
settings and batching, decodes, encodes a Decision of the same shape (no
features, no model) and produces it with the scorer's producer settings and
delivery mode (offsets committed about every second after the outputs are
acknowledged; exactly-once: one transaction per commit interval). Measured in
the same run, at the same rates, with the same paced producer and a fresh
probe on fresh topics, it shows what the broker and this machine allow for
that path; the scorer's latency is judged against it (``p99_ratio_to_relay``
at the goal rate), because absolute figures on a shared machine move from run
to run. In the relay's rows ``scorer_cpu_cores`` is the relay's.

Before the first try the scorer and the relay each run at the top rate for
``--broker-warmup`` seconds in every mode, unmeasured, the first mode measured
last: a broker is slow for its first tens of seconds under a new load, and the
first exactly-once scorer run on a broker slower still; without this the first
try paid for it.

    python load_tests/scorer_latency.py --json
    python load_tests/scorer_latency.py --modes at-least-once,exactly-once --tries 3 --json
    python load_tests/scorer_latency.py --rates 5000,20000 --seconds 20 \
        --modes at-least-once,exactly-once --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit
import latency_probe
from benchkit import log

from pipeline.scorer.config import ScorerConfig

GOALS_P99_MS = {"at-least-once": 50.0, "exactly-once": 100.0}
GOAL_RATE = 20_000.0
TRAIN_DAYS = 21


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ChildProcess:
    """A consumer in a subprocess, logging to a file; ready once it has partitions."""

    name = "child"

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=benchkit.ROOT,
        )

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.name} exited early:\n{self.tail()}")
            if "assigned [" in self.log_path.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"the {self.name} got no partitions in {timeout_s:.0f}s:\n{self.tail()}")

    def scrape(self) -> dict[str, float]:
        """Batch count, size and processing-time sums from the scorer's Prometheus endpoint
        (nothing for a process that logs no ``metrics on`` address)."""
        import re
        import urllib.request

        found = re.search(r"metrics on (http://\S+)", self.log_path.read_text())
        if not found:
            return {}
        try:
            with urllib.request.urlopen(found.group(1), timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return {}
        wanted = (
            "fraud_scorer_batch_size_sum",
            "fraud_scorer_batch_size_count",
            "fraud_scorer_batch_processing_seconds_sum",
            "fraud_scorer_commit_seconds_sum",
            "fraud_scorer_commit_seconds_count",
        )
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in wanted:
                values[name] = float(value)
        return values

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def cpu(self) -> float:
        try:
            return cpu_seconds(self.process.pid)
        except (OSError, IndexError, ValueError):
            return float("nan")

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


class ScorerProcess(ChildProcess):
    """``fraud score`` in a subprocess."""

    name = "scorer"

    def __init__(
        self, env: dict[str, str], args: list[str], log_path: Path, profile: str | None = None
    ) -> None:
        fraud = Path(sys.executable).with_name("fraud")
        command = (
            [str(fraud)]
            if fraud.exists()
            else [sys.executable, "-c", "from pipeline.cli import main; main()"]
        )
        if profile:
            command = [sys.executable, "-m", "cProfile", "-o", profile, str(fraud)]
        super().__init__([*command, "score", *args], env, log_path)


class RelayProcess(ChildProcess):
    """``latency_relay.py`` in a subprocess: the scorer's I/O, no work."""

    name = "relay"

    def __init__(self, env: dict[str, str], args: list[str], log_path: Path) -> None:
        script = Path(__file__).resolve().with_name("latency_relay.py")
        super().__init__([sys.executable, str(script), *args], env, log_path)


class ProducerProcess:
    """The paced producer in a spawned process (no GIL shared with the probe)."""

    def __init__(
        self, config: dict[str, Any], header: bytes, rests: list[bytes], keys: list[bytes]
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=latency_probe.producer_main,
            args=(child, config, header, rests, keys),
            daemon=True,
        )
        self.process.start()
        child.close()
        if not self.conn.poll(120) or self.conn.recv() != "ready":
            raise RuntimeError("the producer process did not start")

    def start(self, request: latency_probe.PaceRequest) -> None:
        self.conn.send(request)

    def result(self, timeout_s: float) -> latency_probe.PaceReport | None:
        return self.conn.recv() if self.conn.poll(timeout_s) else None

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send(None)
        self.process.join(15)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def batch_figures(
    before: dict[str, float], after: dict[str, float], cpu_s: float
) -> dict[str, Any]:
    """Batches of one rate (warm-up included): count, mean size, wall and CPU ms per batch."""
    try:
        count = after["fraud_scorer_batch_size_count"] - before["fraud_scorer_batch_size_count"]
        size = after["fraud_scorer_batch_size_sum"] - before["fraud_scorer_batch_size_sum"]
        wall = (
            after["fraud_scorer_batch_processing_seconds_sum"]
            - before["fraud_scorer_batch_processing_seconds_sum"]
        )
    except KeyError:
        return {}
    if count <= 0:
        return {}
    figures: dict[str, Any] = {
        "batches": int(count),
        "mean_size": round(size / count, 1),
        "processing_ms_mean": round(wall / count * 1000, 2),
        "cpu_ms_per_batch": round(cpu_s / count * 1000, 2),
    }
    commits = after.get("fraud_scorer_commit_seconds_count", 0.0) - before.get(
        "fraud_scorer_commit_seconds_count", 0.0
    )
    if commits > 0:
        commit_s = after["fraud_scorer_commit_seconds_sum"] - before.get(
            "fraud_scorer_commit_seconds_sum", 0.0
        )
        figures["commits"] = int(commits)
        figures["commit_ms_mean"] = round(commit_s / commits * 1000, 2)
    return figures


def encoded_stream(settings: Any, frame: Any) -> tuple[bytes, list[bytes], list[bytes]]:
    """Header, payload bodies after the transaction id, and keys of the frame's rows."""
    import numpy as np

    from pipeline.data.io import timestamps_ms
    from pipeline.serde import Serde

    codec = Serde.from_settings(settings).transactions()
    payloads = codec.encode_columns(
        np.zeros(len(frame), np.int64),
        timestamps_ms(frame),
        frame["card_id"],
        frame["terminal_id"],
        frame["amount"],
    )
    header = payloads[0][: latency_probe.HEADER_SIZE]
    assert payloads[0][latency_probe.HEADER_SIZE] == 0, "transaction_id is not the first field"
    rests = [p[latency_probe.HEADER_SIZE + 1 :] for p in payloads]
    keys = [str(card).encode() for card in frame["card_id"].tolist()]
    return header, rests, keys


def check_wire(settings: Any, probe: latency_probe.DecisionProbe) -> None:
    """The probe's fast id read agrees with a full Decision decode."""
    from pipeline.serde import Serde

    payload = probe.first_payload
    if payload is None:
        raise RuntimeError("no decision was read")
    record = Serde.from_settings(settings).codec("Decision").decode(payload)
    if record["transaction_id"] != latency_probe.first_long(payload):
        raise RuntimeError("the probe misreads the Decision transaction_id")


def measure_rates(
    label: str,
    child: ChildProcess,
    producer: ProducerProcess,
    probe: latency_probe.DecisionProbe,
    topic: str,
    args: argparse.Namespace,
    index: int,
) -> tuple[list[dict[str, Any]], int]:
    """Every rate of ``args.rates`` sent to ``topic``, read back by ``probe``: one row each.

    ``index`` is the first stream row to send; the next one is returned with the rows.
    """
    rows: list[dict[str, Any]] = []
    for rate in args.rates:
        seconds = args.warmup + args.seconds
        log(f"{label}: {rate:.0f}/s for {seconds:.0f}s ({args.warmup:.0f}s warm-up)")
        load_before = load_average()
        cpu_before, wall_before = child.cpu(), time.monotonic()
        scraped_before = child.scrape()
        producer.start(latency_probe.PaceRequest(topic, rate, seconds, index))
        report = None
        deadline = time.monotonic() + seconds + 60
        while report is None and time.monotonic() < deadline:
            probe.poll(0.05)
            if producer.conn.poll(0):
                report = producer.result(0)
        if report is None:
            raise RuntimeError("the paced producer did not finish")
        cpu_used = child.cpu() - cpu_before
        child_cores = cpu_used / (time.monotonic() - wall_before)
        batches = batch_figures(scraped_before, child.scrape(), cpu_used)
        index += len(report.send_us)
        first_id = latency_probe.transaction_id(int(report.send_us[0]), 0)
        drain_until = time.monotonic() + args.drain_timeout
        while time.monotonic() < drain_until:
            probe.pump(0.5)
            ids, _, _ = probe.first_reads()
            if int((ids >= first_id).sum()) >= len(report.send_us):
                break
            if child.process.poll() is not None:
                raise RuntimeError(f"the {child.name} died:\n{child.tail()}")
        ids, read_s, duplicates = probe.first_reads()
        row = latency_probe.latency_row(rate, report, args.warmup, ids, read_s, probe.samples)
        row.update(
            scorer_cpu_cores=round(child_cores, 2),
            scorer_batches=batches,
            duplicates_so_far=duplicates,
            load_before=load_before,
            load_after=load_average(),
        )
        log(f"{label}: {rate:.0f}/s -> {json.dumps(row)}")
        rows.append(row)
        probe.pump(args.pause)
    return rows, index


def relay_topics(settings: Any, mode: str) -> tuple[str, str]:
    """Fresh transactions and decisions topics for the relay, with the product's specs."""
    from pipeline.kafka.admin import topic_specs
    from pipeline.kafka.clients import make_admin

    names = {
        field: benchkit.unique(f"{field}-relay-{mode}") for field in ("transactions", "decisions")
    }
    relay_settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update=names)}
    )
    specs = [spec for spec in topic_specs(relay_settings) if spec.name in names.values()]
    admin = make_admin(settings)  # held until the futures are done
    futures = admin.create_topics([spec.new_topic() for spec in specs])
    for future in futures.values():
        future.result(30)
    return names["transactions"], names["decisions"]


def run_relay(
    mode: str,
    args: argparse.Namespace,
    env: dict[str, str],
    settings: Any,
    producer: ProducerProcess,
    index: int,
    work: Path,
) -> tuple[list[dict[str, Any]], int]:
    """The rates against the relay, on fresh topics, read by a fresh probe."""
    from pipeline.serde import Serde

    source, sink = relay_topics(settings, mode)
    relay_args = [
        "--source",
        source,
        "--sink",
        sink,
        "--group",
        benchkit.unique("relay"),
        "--mode",
        mode,
        "--batch-size",
        str(args.batch_size),
    ]
    if args.commit_interval_ms:
        relay_args += ["--commit-interval-ms", str(args.commit_interval_ms)]
    relay = probe = None
    try:
        log(f"{mode}: starting the relay")
        relay = RelayProcess(env, relay_args, work / f"relay-{mode}.log")
        probe = latency_probe.DecisionProbe(
            settings.librdkafka_config(**{"group.id": benchkit.unique("probe")}),
            sink,
            args.partitions,
            Serde.from_settings(settings).codec("Decision").decode,
        )
        relay.wait_ready(args.start_timeout)
        rows, index = measure_rates(f"{mode} relay", relay, producer, probe, source, args, index)
        check_wire(settings, probe)
    finally:
        if relay is not None:
            relay.stop()
            log(f"{mode}: relay said: {relay.tail(2)}")
        if probe is not None:
            probe.close()
    return rows, index


def p99_ratio(rows: list[dict[str, Any]], relay_rows: list[dict[str, Any]]) -> float | None:
    """Scorer p99 / relay p99 at the goal rate (``None`` unless both were measured there)."""
    scorer = next((r for r in rows if r["offered_per_s"] == GOAL_RATE), None)
    relay = next((r for r in relay_rows if r["offered_per_s"] == GOAL_RATE), None)
    if not scorer or not relay or scorer["p99_ms"] is None or not relay["p99_ms"]:
        return None
    return round(scorer["p99_ms"] / relay["p99_ms"], 2)


def run_mode(
    mode: str,
    args: argparse.Namespace,
    base_env: dict[str, str],
    stream: tuple[bytes, list[bytes], list[bytes]],
    shared: dict[str, str],
    bootstrap: str,
    registry_dir: str,
    work: Path,
) -> dict[str, Any]:
    """One try of ``mode``: the scorer, then (``args.relay``) the relay, at every rate."""
    from pipeline.kafka.admin import create_topics
    from pipeline.settings import TopicNames, load_settings

    topic_env = {
        f"FRAUD_TOPICS__{field.upper()}": benchkit.unique(f"{field}-{mode}")
        for field in TopicNames.model_fields
    }
    topic_env.update(
        FRAUD_TOPICS__MODEL_CONTROL=shared["mc"], FRAUD_TOPICS__TERMINAL_FEATURES=shared["tf"]
    )
    os.environ.update(topic_env)
    settings = load_settings(
        kafka_bootstrap_servers=bootstrap, registry_dir=registry_dir, partitions=args.partitions
    )
    create_topics(settings)  # the product's specs: compacted changelog, co-partitioned
    names = {"tx": settings.topics.transactions, "dec": settings.topics.decisions}

    env = dict(
        base_env,
        **topic_env,
        FRAUD_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        FRAUD_REGISTRY_DIR=registry_dir,
        PYTHONPATH=str(benchkit.ROOT),
    )
    scorer_args = [
        "--group",
        benchkit.unique("latency"),
        "--worker-id",
        benchkit.unique("w"),
        "--batch-size",
        str(args.batch_size),
        "--metrics-port",
        "0",
        "--exactly-once" if mode == "exactly-once" else "--at-least-once",
    ]
    if args.commit_interval_ms:
        scorer_args += ["--commit-interval-ms", str(args.commit_interval_ms)]
    header, rests, keys = stream
    producer_config = settings.librdkafka_config(
        **{
            "linger.ms": args.linger_ms,
            "compression.type": "lz4",
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    probe_config = settings.librdkafka_config(**{"group.id": benchkit.unique("probe")})

    scorer = producer = probe = None
    rows: list[dict[str, Any]] = []
    relay_rows: list[dict[str, Any]] = []
    try:
        log(f"{mode}: starting the scorer and the producer")
        profile = f"{args.profile_scorer}.{mode}" if args.profile_scorer else None
        scorer = ScorerProcess(env, scorer_args, work / f"scorer-{mode}.log", profile)
        producer = ProducerProcess(producer_config, header, rests, keys)
        from pipeline.serde import Serde

        probe = latency_probe.DecisionProbe(
            probe_config,
            names["dec"],
            args.partitions,
            Serde.from_settings(settings).codec("Decision").decode,
        )
        scorer.wait_ready(args.start_timeout)
        rows, index = measure_rates(mode, scorer, producer, probe, names["tx"], args, 0)
        check_wire(settings, probe)
        scorer.stop()
        log(f"{mode}: scorer said: {scorer.tail(2)}")
        scorer = None
        probe.close()
        probe = None
        if args.relay:
            relay_rows, index = run_relay(mode, args, env, settings, producer, index, work)
    finally:
        if producer is not None:
            producer.stop()
        if scorer is not None:
            scorer.stop()
            log(f"{mode}: scorer said: {scorer.tail(2)}")
        if probe is not None:
            probe.close()
    result: dict[str, Any] = {"rates": rows, "goal": goal_of(mode, rows)}
    if args.relay:
        result["relay"] = {"rates": relay_rows}
        result["p99_ratio_to_relay"] = p99_ratio(rows, relay_rows)
    return result


def goal_of(mode: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    goal = GOALS_P99_MS[mode]
    at_goal = min(rows, key=lambda r: abs(r["offered_per_s"] - GOAL_RATE)) if rows else None
    return {
        "offered_per_s": GOAL_RATE,
        "p99_ms_at_most": goal,
        "met": bool(
            at_goal
            and at_goal["offered_per_s"] == GOAL_RATE
            and at_goal["p99_ms"] is not None
            and at_goal["p99_ms"] <= goal
            and at_goal["missing"] == 0
        ),
    }


_MEDIAN_KEYS = ("sent_per_s", "achieved_per_s", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")


def median_rows(tries: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per rate, the median of every try's latencies; every try's p99 kept alongside.

    Missing and duplicated decisions are summed over the tries, not averaged away.
    """
    import statistics

    if len(tries) == 1:
        return tries[0]
    merged = []
    for rows in zip(*tries, strict=True):
        row = dict(rows[-1])
        for key in _MEDIAN_KEYS:
            values = [r[key] for r in rows if r.get(key) is not None]
            row[key] = round(statistics.median(values), 2) if values else None
        for key in ("measured", "decided", "missing", "delivery_errors"):
            row[key] = sum(r[key] for r in rows)
        row["tries_p99_ms"] = [r["p99_ms"] for r in rows]
        row["tries_p50_ms"] = [r["p50_ms"] for r in rows]
        merged.append(row)
    return merged


def combine_tries(mode: str, tries: list[dict[str, Any]]) -> dict[str, Any]:
    """One mode's result over several tries (each a :func:`run_mode` result)."""
    if len(tries) == 1:
        return tries[0]
    rows = median_rows([t["rates"] for t in tries])
    result: dict[str, Any] = {"rates": rows, "goal": goal_of(mode, rows), "tries": len(tries)}
    if "relay" in tries[0]:
        relay_rows = median_rows([t["relay"]["rates"] for t in tries])
        result["relay"] = {"rates": relay_rows}
        result["p99_ratio_to_relay"] = p99_ratio(rows, relay_rows)
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="5000,20000", help="offered events/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=3.0, help="excluded seconds per rate")
    parser.add_argument("--mode", default=None, choices=sorted(GOALS_P99_MS))
    parser.add_argument("--modes", default=None, help="comma-separated: at-least-once,exactly-once")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=ScorerConfig.batch_size,
        help="scorer --batch-size [default: the scorer's, %(default)s]",
    )
    parser.add_argument(
        "--commit-interval-ms",
        type=int,
        default=None,
        help="scorer --commit-interval-ms [default: the scorer's]",
    )
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--tries",
        type=int,
        default=1,
        help="measure every mode this many times, alternating; report per-rate medians "
        "(each try's p50 and p99 listed too)",
    )
    parser.add_argument(
        "--linger-ms",
        type=float,
        default=5.0,
        help="linger.ms of the paced producer [librdkafka's default, 5]; the measured latency "
        "starts at produce(), so it includes the linger",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="most seconds to wait for the last decisions of a rate",
    )
    parser.add_argument("--pause", type=float, default=1.0, help="idle seconds between rates")
    parser.add_argument(
        "--broker-warmup",
        type=float,
        default=15.0,
        help="seconds of scorer and of relay traffic at the top rate, in every mode, before "
        "the first try (not measured): a broker's first tens of seconds of a new load are "
        "slower (0: none)",
    )
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument(
        "--profile-scorer",
        metavar="PATH",
        default=None,
        help="run the scorer under cProfile, stats to PATH.<mode>",
    )
    parser.add_argument(
        "--relay",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure every rate against the relay (the scorer's I/O path, no work)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    modes = args.modes or args.mode or "at-least-once"
    args.modes = [m.strip() for m in modes.split(",") if m.strip()]
    for mode in args.modes:
        if mode not in GOALS_P99_MS:
            parser.error(f"unknown mode {mode!r}")
    if args.tries < 1:
        parser.error("--tries must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    from pipeline.settings import load_settings
    from pipeline.terminal import backfill

    needed = sum(int(rate * (args.warmup + args.seconds)) for rate in args.rates)
    base_env = dict(os.environ)
    with (
        benchkit.broker() as bootstrap,
        tempfile.TemporaryDirectory() as registry_dir,
        tempfile.TemporaryDirectory(prefix="fraud-latency-") as work,
    ):
        days = TRAIN_DAYS + 7 + needed // 9000 + 2
        log(f"simulating {days} days for {needed} transactions per mode")
        frame = benchkit.simulated(days)
        day = (frame["timestamp"] - frame["timestamp"].min()).dt.days.to_numpy()
        version = benchkit.register_champion(
            frame[day < TRAIN_DAYS].reset_index(drop=True), Path(registry_dir), TRAIN_DAYS
        )
        history = frame[day < TRAIN_DAYS + 7]
        stream_frame = frame[day >= TRAIN_DAYS + 7].reset_index(drop=True)
        if len(stream_frame) < needed:
            log(f"only {len(stream_frame)} transactions; the stream will repeat")
        shared = {"mc": benchkit.unique("mc"), "tf": benchkit.unique("tf")}
        os.environ.update(
            {
                "FRAUD_TOPICS__MODEL_CONTROL": shared["mc"],
                "FRAUD_TOPICS__TERMINAL_FEATURES": shared["tf"],
            }
        )
        settings = load_settings(kafka_bootstrap_servers=bootstrap, registry_dir=registry_dir)
        benchkit.create_topics(settings, {shared["mc"]: 1, shared["tf"]: 3})
        log("publishing terminal histories (backfill)")
        backfill(settings, history)
        stream = encoded_stream(settings, stream_frame)
        # A broker's first tens of seconds under a new load are slow, and the
        # scorer's first exactly-once run on it slower still (a relay warm-up
        # alone did not absorb that): warm it with both, in every mode, unmeasured.
        # The first mode measured is warmed last, right before its first try.
        top = max(args.rates)
        for mode in reversed(args.modes) if args.broker_warmup > 0 else []:
            log(f"warming the broker: {mode}, scorer and relay at {top:.0f}/s, unmeasured")
            warm = argparse.Namespace(
                **{**vars(args), "rates": [top], "seconds": args.broker_warmup, "warmup": 0.0}
            )
            warm.relay = True
            run_mode(mode, warm, base_env, stream, shared, bootstrap, registry_dir, Path(work))
        # Tries alternate (every mode, scorer then relay, then again), so a burst
        # of load from elsewhere on the machine lands in one try, not in one side.
        tries: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
        for attempt in range(args.tries):
            if args.tries > 1:
                log(f"try {attempt + 1} of {args.tries}")
            for mode in args.modes:
                tries[mode].append(
                    run_mode(
                        mode, args, base_env, stream, shared, bootstrap, registry_dir, Path(work)
                    )
                )
        results = {mode: combine_tries(mode, tries[mode]) for mode in args.modes}

    first = args.modes[0]
    report: dict[str, Any] = {
        "rates": results[first]["rates"],
        "mode": first,
        "goal": results[first]["goal"],
        "cores": os.cpu_count(),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "seconds_per_rate": args.seconds,
        "tries": args.tries,
        "warmup_s": args.warmup,
        "batch_size": args.batch_size,
        "commit_interval_ms": args.commit_interval_ms,
        "partitions": args.partitions,
        "producer_linger_ms": args.linger_ms,
        "model": version,
        "modes": results,
    }
    if args.relay:
        report["p99_ratio_to_relay"] = results[first]["p99_ratio_to_relay"]
    if args.json:
        print(json.dumps(report))
    else:
        for mode, result in results.items():
            print(f"{mode}: goal {result['goal']}")
            tables = [("scorer", result["rates"])]
            if "relay" in result:
                tables.append(("relay", result["relay"]["rates"]))
            for name, rows in tables:
                for row in rows:
                    print(
                        f"  {name:<6} {row['offered_per_s']:>8.0f}/s"
                        f" achieved {row['achieved_per_s']:>8.0f}/s"
                        f"  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms"
                        f"  max {row['max_ms']} ms  missing {row['missing']}"
                    )
            if "relay" in result:
                print(f"  p99 scorer/relay at {GOAL_RATE:.0f}/s: {result['p99_ratio_to_relay']}")
        print(f"cores {report['cores']}; {report['uptime']}")


if __name__ == "__main__":
    main()
