"""Drift experiment: detection delays, false alarms and recovery, end to end through Kafka.

Per drift kind (covariate, card_testing, fraud_rate, each alone) it simulates
``--days`` days with the drift injected at ``--drift-day``, trains a champion
on ``--train-days`` days after a ``--burn-in-days`` burn-in (a simulation
starts with no fraud history: its 30-day terminal windows, which use labels
a label delay old, and its fraud counts keep rising for about 40 days, so
earlier days are not stationary), backfills the terminal-features table, and
runs a real ``fraud score`` and a real ``fraud monitor`` process on isolated
topics while ``fraud replay --labels`` sends the days as fast as possible
(event time drives every window, so this is an accelerated replay). The
scorer starts ``--warmup-days`` days before the end of the champion's
training data to warm its card state; the monitor starts watching there (the
monitor group is committed at the end of what was produced then, as when a
model is deployed after its training data and a monitor next to a running
scorer). Stationary runs follow the same layout without drift.

Detection delays are read from the drift-events topic, in simulated time:
fast signal = first score/feature event whose block ends after the drift,
``window_end - drift``; label signal = first error-rate event after the drift,
``window_end + label delay - drift`` (an outcome is known a label delay after
its transaction). Then ``fraud retrain --once`` runs as of the end of the
replay (only labels known by then) with the detected drift start, and average
precision is computed offline (same feature code, same rows) for the champion
on the week before the drift, and for the champion and the challenger on the
retrain's holdout days (all after the drift).

Stationary runs (no drift, several seeds) count every drift event: false alarms.

    python load_tests/drift_experiment.py --json
    python load_tests/drift_experiment.py --quick --json
    python load_tests/drift_experiment.py --kinds covariate --seeds 0 --json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import broker, isolated_topics, log
from drift_kit import (
    Background,
    commit_at_end,
    dlq_reasons,
    fraud,
    read_all,
    run,
    wait_caught_up,
)

DAY_MS = 86_400_000
START = dt.date(2018, 4, 1)
KINDS = ("covariate", "card_testing", "fraud_rate")
DRIFT_PARAMS = {"covariate": "", "card_testing": "", "fraud_rate": ""}  # the defaults of drift.py


@dataclass(frozen=True)
class Scale:
    """Sizes of one run."""

    customers: int
    days: int
    drift_day: int
    stationary_days: int
    burn_in_days: int
    train_days: int
    warmup_days: int
    label_delay_days: int
    block_min_count: int
    reference_blocks: int
    min_post_drift_frauds: int
    holdout_days: int
    timeout_s: float

    @property
    def train_range(self) -> tuple[int, int]:
        """Champion training days ``[first, end)``: right after the burn-in."""
        return self.burn_in_days, self.burn_in_days + self.train_days

    @property
    def watch_day(self) -> int:
        """The monitor starts watching where the champion's training data ends."""
        return self.train_range[1]

    @property
    def replay_day(self) -> int:
        """The scorer starts ``warmup_days`` before the monitor (card state warm-up)."""
        return self.watch_day - self.warmup_days


def day_ms(day: float) -> int:
    return int(
        dt.datetime(START.year, START.month, START.day, tzinfo=dt.UTC).timestamp() * 1000
        + day * DAY_MS
    )


def day_date(day: int) -> str:
    return (START + dt.timedelta(days=day)).isoformat()


def simulate(scale: Scale, days: int, seed: int, spec: str) -> pd.DataFrame:
    from pipeline.data.drift import parse_drift_spec
    from pipeline.data.simulator import SimulatorConfig
    from pipeline.data.simulator import simulate as run_simulation

    return run_simulation(
        SimulatorConfig(
            n_customers=scale.customers,
            n_terminals=2 * scale.customers,
            n_days=days,
            seed=seed,
            start_date=START,
            drift=parse_drift_spec(spec),
        )
    )


def sim_day(frame: pd.DataFrame) -> np.ndarray:
    from pipeline.features.offline import timestamps_to_ms

    return (timestamps_to_ms(frame["timestamp"]) - day_ms(0)) // DAY_MS


def train_champion(
    frame: pd.DataFrame,
    features: np.ndarray,
    days: np.ndarray,
    first: int,
    end: int,
    registry: Path,
) -> None:
    from pipeline.features import FEATURE_NAMES, FEATURE_SET_VERSION
    from pipeline.model.params import DEFAULT_PARAMS
    from pipeline.model.training import train_booster
    from pipeline.registry import ModelRegistry

    rows = (days >= first) & (days < end)
    booster = train_booster(
        features[rows], frame["is_fraud"].to_numpy()[rows], FEATURE_NAMES, DEFAULT_PARAMS
    )
    ModelRegistry(registry).register(
        booster,
        features=FEATURE_NAMES,
        params=DEFAULT_PARAMS.to_dict(),
        data_range=(day_date(first), day_date(end - 1)),
        metrics={},
        feature_set_version=FEATURE_SET_VERSION,
        alias="champion",
    )


def model_scores(registry: Path, ref: str, features: np.ndarray) -> np.ndarray:
    from pipeline.features import FEATURE_NAMES
    from pipeline.registry import ModelRegistry

    model = ModelRegistry(registry).load(ref, expected_features=FEATURE_NAMES)
    return np.asarray(model.booster.inplace_predict(features), dtype=np.float64)


def ap_on(frame: pd.DataFrame, scores: np.ndarray, rows: np.ndarray) -> float | None:
    from pipeline.model.metrics import average_precision

    y = frame["is_fraud"].to_numpy()[rows]
    return round(average_precision(y, scores[rows]), 4) if y.any() else None


def pipeline_run(
    scale: Scale, frame: pd.DataFrame, data: Path, work: Path, bootstrap: str, registry: Path
) -> tuple[list[dict[str, Any]], Any, dict[str, str], dict[str, Any]]:
    """Scorer + monitor over the replayed frame; the drift events and the run's env."""
    settings = isolated_topics(bootstrap, 2)
    env = dict(
        os.environ,
        FRAUD_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        FRAUD_REGISTRY_DIR=str(registry),
        FRAUD_LABEL_DELAY_DAYS=str(scale.label_delay_days),
        PYTHONUNBUFFERED="1",
    )
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    topics = settings.topics
    logfile = work / "run.log"
    timings: dict[str, Any] = {}
    group, app_id = f"drift-scorer-{uuid.uuid4().hex[:8]}", f"drift-monitor-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    run(fraud("terminal-features", "--data", str(data)), env, logfile, scale.timeout_s)
    timings["terminal_backfill_s"] = time.monotonic() - t0
    procs: list[Background] = []
    try:
        scorer = Background(
            fraud("score", "--group", group, "--worker-id", "drift-1", "--no-metrics"),
            env,
            work / "scorer.log",
        )
        procs.append(scorer)
        warm_start, warm_end = day_date(scale.replay_day), day_date(scale.watch_day)
        t0 = time.monotonic()
        run(
            fraud(
                "replay", "--data", str(data), "--start", warm_start, "--end", warm_end, "--labels"
            ),
            env,
            logfile,
            scale.timeout_s,
        )
        # Labels ahead of the scorer's event time stay unread (and uncommitted)
        # until transactions pass them, so only transactions are waited on.
        wait_caught_up(settings, group, [topics.transactions], scale.timeout_s, procs, settle_s=4.0)
        timings["warmup_s"] = time.monotonic() - t0
        # The monitor starts watching here: its group begins at the current ends.
        watched = [topics.monitor_stats, topics.outcomes, topics.drift_events]
        commit_at_end(settings, app_id, watched)
        monitor = Background(
            fraud(
                "monitor",
                "--app-id",
                app_id,
                "--block-min-count",
                str(scale.block_min_count),
                "--reference-blocks",
                str(scale.reference_blocks),
                "--no-metrics",
            ),
            env,
            work / "monitor.log",
        )
        procs.append(monitor)
        t0 = time.monotonic()
        run(
            fraud("replay", "--data", str(data), "--start", warm_end, "--labels"),
            env,
            logfile,
            scale.timeout_s,
        )
        # Labels ahead of the scorer's event time stay unread (and uncommitted)
        # until transactions pass them, so only transactions are waited on.
        wait_caught_up(settings, group, [topics.transactions], scale.timeout_s, procs, settle_s=4.0)
        timings["replay_and_score_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        wait_caught_up(settings, app_id, watched, scale.timeout_s, procs, settle_s=6.0)
        timings["monitor_drain_s"] = time.monotonic() - t0
        events = read_all(settings, topics.drift_events, "DriftEvent")
        timings["dead_letters"] = dlq_reasons(settings)
    finally:
        for process in reversed(procs):
            process.stop()
    return events, settings, env, timings


def summarize_events(events: list[dict[str, Any]], drift_ms: int | None) -> dict[str, Any]:
    rows = sorted(events, key=lambda e: e["window_end"])
    return {
        "count": len(rows),
        "events": [
            {
                "signal": e["signal"],
                "detector": e["detector"],
                "window_start_day": round((e["window_start"] - day_ms(0)) / DAY_MS, 3),
                "window_end_day": round((e["window_end"] - day_ms(0)) / DAY_MS, 3),
                "statistic": round(float(e["statistic"]), 4),
            }
            for e in rows[:20]
        ],
        "before_drift": None
        if drift_ms is None
        else sum(e["window_end"] <= drift_ms for e in rows),
    }


def drift_run(kind: str, seed: int, scale: Scale, bootstrap: str, root: Path) -> dict[str, Any]:
    from pipeline.features import feature_matrix

    work = root / f"{kind}-{seed}"
    work.mkdir()
    registry = work / "models"
    spec = f"{kind}@day={scale.drift_day}{DRIFT_PARAMS[kind]}"
    log(f"{kind}: simulating {scale.days} days, {scale.customers} customers, drift {spec}")
    frame = simulate(scale, scale.days, seed, spec)
    data = work / "tx.parquet"
    frame.to_parquet(data)
    days = sim_day(frame)
    features = feature_matrix(frame, scale.label_delay_days * DAY_MS)
    train_first, train_end = scale.train_range
    train_champion(frame, features, days, train_first, train_end, registry)
    log(
        f"{kind}: champion trained on days [{train_first}, {train_end}); replaying days "
        f"[{scale.replay_day}, {scale.days}): {int((days >= scale.replay_day).sum()):,} "
        "transactions"
    )
    events, _, env, timings = pipeline_run(scale, frame, data, work, bootstrap, registry)
    drift_ms = day_ms(scale.drift_day)
    after = sorted((e for e in events if e["window_end"] > drift_ms), key=lambda e: e["window_end"])
    fast = next((e for e in after if e["signal"] != "error_rate"), None)
    label = next((e for e in after if e["signal"] == "error_rate"), None)
    fast_delay = None if fast is None else round((fast["window_end"] - drift_ms) / DAY_MS, 3)
    label_delay = (
        None
        if label is None
        else round((label["window_end"] + scale.label_delay_days * DAY_MS - drift_ms) / DAY_MS, 3)
    )
    # Retrain as of the end of the replay: only labels known by then count.
    detected = fast or label
    drift_start_day = (
        scale.drift_day
        if detected is None
        else int((detected["window_start"] - day_ms(0)) // DAY_MS)
    )
    t0 = time.monotonic()
    out = run(
        fraud(
            "retrain",
            "--once",
            "--json",
            "--no-announce",
            "--as-of",
            f"{day_date(scale.days)}T00:00",
            "--drift-start",
            day_date(drift_start_day),
            "--holdout-days",
            str(scale.holdout_days),
            "--min-post-drift-frauds",
            str(scale.min_post_drift_frauds),
        ),
        env,
        work / "run.log",
        scale.timeout_s,
    )
    timings["retrain_s"] = time.monotonic() - t0
    result = json.loads(out.strip().splitlines()[-1])
    champion = model_scores(registry, "champion", features)
    pre = (days >= scale.drift_day - 7) & (days < scale.drift_day)
    report: dict[str, Any] = {
        "fast_detection_delay_days": fast_delay,
        "label_detection_delay_days": label_delay,
        "ap_pre_drift": ap_on(frame, champion, pre),
        "ap_champion_post_drift": None,
        "ap_challenger_post_drift": None,
        "details": {
            "seed": seed,
            "spec": spec,
            "transactions": len(frame),
            "replayed_transactions": int((days >= scale.replay_day).sum()),
            "champion_train_days": [train_first, train_end - 1],
            "pre_drift_test_days": [scale.drift_day - 7, scale.drift_day - 1],
            "fast_signal": None if fast is None else fast["signal"],
            "retrain_drift_start_day": drift_start_day,
            "retrain_drift_start_from": "detection"
            if detected
            else "true drift day (none detected)",
            "retrain_status": result.get("status"),
            "retrain_window_note": result.get("window_note"),
            "retrain_train": result.get("train"),
            "retrain_holdout": result.get("holdout"),
            "retrain_reported_metrics": {
                "challenger": result.get("challenger_metrics"),
                "champion": result.get("champion_metrics"),
            },
            "drift_events": summarize_events(events, drift_ms),
            "timings_s": {
                k: round(v, 1) if isinstance(v, float) else v for k, v in timings.items()
            },
        },
    }
    holdout = result.get("holdout")
    if result.get("version") and holdout:
        first = (dt.date.fromisoformat(str(holdout["start"])[:10]) - START).days
        last = (dt.date.fromisoformat(str(holdout["end"])[:10]) - START).days
        post = (days >= first) & (days <= last)
        challenger = model_scores(registry, str(result["version"]), features)
        report["ap_champion_post_drift"] = ap_on(frame, champion, post)
        report["ap_challenger_post_drift"] = ap_on(frame, challenger, post)
        report["details"]["post_drift_test_days"] = [first, last]
    return report


def stationary_run(seed: int, scale: Scale, bootstrap: str, root: Path) -> dict[str, Any]:
    from pipeline.features import feature_matrix

    work = root / f"stationary-{seed}"
    work.mkdir()
    registry = work / "models"
    log(f"stationary seed {seed}: simulating {scale.stationary_days} days")
    frame = simulate(scale, scale.stationary_days, seed, "")
    data = work / "tx.parquet"
    frame.to_parquet(data)
    days = sim_day(frame)
    features = feature_matrix(frame, scale.label_delay_days * DAY_MS)
    train_champion(frame, features, days, *scale.train_range, registry)
    events, _, _, timings = pipeline_run(scale, frame, data, work, bootstrap, registry)
    summary = summarize_events(events, None)
    return {
        "seed": seed,
        "false_alarms": summary["count"],
        "watched_days": scale.stationary_days - scale.watch_day,
        "events": summary["events"],
        "timings_s": {k: round(v, 1) if isinstance(v, float) else v for k, v in timings.items()},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated drift kinds")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated stationary seeds")
    parser.add_argument("--drift-seed", type=int, default=0, help="seed of the drift runs")
    parser.add_argument("--days", type=int, default=104, help="days of a drift run")
    parser.add_argument("--drift-day", type=int, default=80)
    parser.add_argument("--stationary-days", type=int, default=104, help="days of a stationary run")
    parser.add_argument(
        "--burn-in-days",
        type=int,
        default=45,
        help="simulated days before the champion's training data (the simulator's fraud "
        "history and 30-day feature windows fill up)",
    )
    parser.add_argument("--train-days", type=int, default=21, help="champion training days")
    parser.add_argument(
        "--warmup-days",
        type=int,
        default=30,
        help="days the scorer scores before the monitor starts watching (card state)",
    )
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument(
        "--block-min-count",
        type=int,
        default=None,
        help="monitor block size [default: customers, about half a day]",
    )
    parser.add_argument("--reference-blocks", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=900.0, help="bound of every wait (s)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 500 customers, covariate only, one stationary seed",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.customers, args.kinds, args.seeds = 500, "covariate", "0"
    unknown = set(args.kinds.split(",")) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    watch = args.burn_in_days + args.train_days
    if min(args.burn_in_days, args.train_days, args.warmup_days) < 1 or args.warmup_days > watch:
        parser.error("need burn-in, train and warmup days >= 1, warmup <= burn-in + train days")
    if args.drift_day < watch + 7 or args.days < args.drift_day + 14:
        parser.error(
            "need drift-day >= burn-in + train days + 7 (a watched week before the drift) "
            "and days >= drift-day + 14"
        )
    if args.stationary_days < watch + 1:
        parser.error("need stationary-days > burn-in + train days")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scale = Scale(
        customers=args.customers,
        days=args.days,
        drift_day=args.drift_day,
        stationary_days=args.stationary_days,
        burn_in_days=args.burn_in_days,
        train_days=args.train_days,
        warmup_days=args.warmup_days,
        label_delay_days=7,
        block_min_count=args.block_min_count or args.customers,
        reference_blocks=args.reference_blocks,
        min_post_drift_frauds=max(20, args.customers // 20),
        holdout_days=7,
        timeout_s=args.timeout,
    )
    root = Path(tempfile.mkdtemp(prefix="fraud-drift-"))
    started = time.monotonic()
    result: dict[str, Any] = {"drifts": {}, "false_alarms_stationary": None, "stationary_seeds": 0}
    try:
        with broker() as bootstrap:
            for kind in [k for k in args.kinds.split(",") if k]:
                result["drifts"][kind] = drift_run(kind, args.drift_seed, scale, bootstrap, root)
                log(
                    f"{kind}: {json.dumps({k: v for k, v in result['drifts'][kind].items() if k != 'details'})}"
                )
            seeds = [int(s) for s in args.seeds.split(",") if s]
            runs = [stationary_run(seed, scale, bootstrap, root) for seed in seeds]
            result["false_alarms_stationary"] = (
                sum(r["false_alarms"] for r in runs) if runs else None
            )
            result["stationary_seeds"] = len(runs)
            result["stationary_runs"] = runs
    finally:
        if args.keep:
            log(f"work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["scale"] = {
        **scale.__dict__,
        "champion_train_days": list(scale.train_range),
        "replay_from_day": scale.replay_day,
        "watch_from_day": scale.watch_day,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result, indent=None if args.json else 2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
