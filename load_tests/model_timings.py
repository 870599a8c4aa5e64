"""Model-path timings: simulate, offline features, online features, training, prequential.

Run: .venv/bin/python load_tests/model_timings.py [--seed 0] [--days 183] [--data FILE]
Prints one JSON object of wall-clock seconds (and the online evaluator's us/event).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import timedelta

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=183)
    parser.add_argument("--data", help="use this file instead of simulating")
    args = parser.parse_args()

    from pipeline.data import SimulatorConfig, read_transactions, simulate
    from pipeline.features import CardStateStore, feature_matrix, timestamps_to_ms
    from pipeline.model import DEFAULT_PARAMS
    from pipeline.model.workflow import Dataset, evaluate_protocol, prepare, train_model

    timings: dict[str, float | int] = {}
    start = time.perf_counter()
    if args.data:
        frame = read_transactions(args.data, require_labels=True)
        timings["read_s"] = time.perf_counter() - start
    else:
        frame = simulate(SimulatorConfig(n_days=args.days, seed=args.seed))
        timings["simulate_s"] = time.perf_counter() - start
    timings["rows"] = len(frame)

    start = time.perf_counter()
    matrix = feature_matrix(frame)
    timings["offline_features_s"] = time.perf_counter() - start

    # Online evaluator: the last 200k events in 2000-row batches, after warming
    # the state with the 30 days before them.
    ts = timestamps_to_ms(frame["timestamp"])
    card, amount = frame["card_id"].to_numpy(), frame["amount"].to_numpy()
    tail = max(0, len(frame) - 200_000)
    warm_from = int(np.searchsorted(ts, ts[tail] - 30 * 86_400_000))
    store = CardStateStore()
    for lo in range(warm_from, tail, 5000):
        hi = min(lo + 5000, tail)
        store.update(card[lo:hi], ts[lo:hi], amount[lo:hi])
    start = time.perf_counter()
    for lo in range(tail, len(frame), 2000):
        hi = min(lo + 2000, len(frame))
        store.features(card[lo:hi], ts[lo:hi], amount[lo:hi], None)
    online_s = time.perf_counter() - start
    timings["online_features_us_per_event"] = online_s / (len(frame) - tail) * 1e6

    data = Dataset(
        frame,
        matrix,
        __import__("pipeline.model.protocols", fromlist=["day_numbers"]).day_numbers(
            frame["timestamp"]
        ),
        card.astype(np.int64),
        frame["is_fraud"].to_numpy(np.int8),
    )
    del prepare
    end = data.last_day - timedelta(days=14)
    start = time.perf_counter()
    result = train_model(data, end - timedelta(days=20), end, DEFAULT_PARAMS)
    timings["train_3_weeks_s"] = time.perf_counter() - start

    start = time.perf_counter()
    summary = evaluate_protocol(data, "prequential", DEFAULT_PARAMS)
    timings["prequential_s"] = time.perf_counter() - start
    output = {
        "timings": {k: round(v, 3) if isinstance(v, float) else v for k, v in timings.items()},
        "holdout_3_weeks": result.holdout.metrics if result.holdout else None,
        "prequential": {
            k: summary[k] for k in ("auc_roc", "average_precision", "card_precision_at_100")
        },
    }
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
